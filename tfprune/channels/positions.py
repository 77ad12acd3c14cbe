"""Channel positions and the sets they are joined into (union-find), with why a set is kept.

Every channel of every tensor of a model is a position. Positions that must be removed
together (the two inputs of a residual `Add`, a channel and its BatchNormalization statistics)
are joined; a position that must stay (a model output, a LayerNormalization's input) is kept
with a reason, and so is every position joined with it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Positions", "QUIET"]

# Reasons that need no telling: a model's inputs and outputs are never trimmed.
QUIET = ("model input", "model output")


class Positions:
    """Union-find over channel positions.

    Example:

    >>> p = Positions()
    >>> a, b = p.new(2), p.new(2)
    >>> p.join(a, b)
    >>> p.find(int(b[1])) == p.find(int(a[1])), p.find(int(a[0])) == p.find(int(a[1]))
    (True, False)
    """

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.reasons: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.parent)

    def new(self, count: int) -> np.ndarray:
        """`count` new positions, each a set of its own."""
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count)

    def find(self, p: int) -> int:
        """The representative of the set of position `p`."""
        root = p
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[p] != root:
            self.parent[p], p = root, self.parent[p]
        return root

    def join(self, a: np.ndarray, b: np.ndarray) -> None:
        """Joins the sets of `a[i]` and `b[i]`, for each i."""
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def keep(self, positions: np.ndarray, reason: str) -> None:
        """Keeps the sets of `positions` whole, for `reason` (the first reason given stays,
        except that a model's own edges are always told as such)."""
        for p in positions.tolist():
            if reason in QUIET:
                self.reasons[p] = reason
            else:
                self.reasons.setdefault(p, reason)
