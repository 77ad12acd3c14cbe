"""`tfprune report`: per-layer sparsity of a .keras file, or the layout and byte split of a
.tflite file."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from tfprune.cli.common import CommandError, check_file, load_keras, reported

__all__ = ["define", "command"]


def define(fv: flags.FlagValues) -> None:
    """`tfprune report` has no flags."""
    del fv


def command(fv: flags.FlagValues, args: Sequence[str]) -> int:
    """Prints the report of FILE."""
    del fv
    if len(args) != 1:
        raise CommandError("report takes exactly one FILE (.keras or .tflite)")
    path = args[0]
    if path.endswith(".tflite"):
        check_file(path, (".tflite",))
        from tfprune import export

        with reported(ValueError):
            print(export.describe_tflite(path))
        return 0
    from tfprune.report import sparsity_report

    print(sparsity_report(load_keras(path)))
    return 0
