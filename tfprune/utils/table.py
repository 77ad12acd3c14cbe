"""Plain-text tables: the one formatter behind every table tfprune prints."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[int] = (),
    footer: Sequence[str] | None = None,
    rules: bool = False,
) -> str:
    """Formats rows of strings as aligned columns separated by two spaces.

    Args:
        header: The column titles.
        rows: The body, one sequence of cell strings per row.
        right: Indices of the columns to align right (numbers). Defaults to none.
        footer: A last row (a total, say), or None. Defaults to None.
        rules: Whether to draw dashed rules under the header and above the footer.
            Defaults to False.

    Returns:
        The table; lines carry no trailing spaces.

    Example:

    >>> print(format_table(("name", "bytes"), [("a", "10"), ("bb", "2")], right=(1,),
    ...                    footer=("total", "12"), rules=True))
    name   bytes
    -----  -----
    a         10
    bb         2
    -----  -----
    total     12
    """
    lines = [tuple(header), *(tuple(r) for r in rows)] + ([tuple(footer)] if footer else [])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [fmt(header)] + ([rule] if rules else []) + [fmt(r) for r in rows]
    if footer:
        out += ([rule] if rules else []) + [fmt(footer)]
    return "\n".join(out)
