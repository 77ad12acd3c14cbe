"""Griffe extension for the API reference: shows docstring doctests as code blocks.

The docstrings keep their `>>>` examples flush with the text (so that they read well in
`help()` and run under `pytest --doctest-modules`); Markdown would otherwise render them as
paragraphs. Each run of doctest lines, up to the next blank line, is fenced as `pycon`, and
doctest directives are dropped from the rendered code.
"""

from __future__ import annotations

import re

import griffe

_DIRECTIVE = re.compile(r"\s*# doctest:.*$")


def fence_doctests(text: str) -> str:
    """Returns `text` with every unindented `>>>` block wrapped in a ```pycon fence."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        if not in_block and line.startswith(">>>"):
            out.append("```pycon")
            in_block = True
        elif in_block and not line.strip():
            out.append("```")
            in_block = False
        out.append(_DIRECTIVE.sub("", line) if in_block else line)
    if in_block:
        out.append("```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fences the doctests of every docstring before it is parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
