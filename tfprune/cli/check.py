"""`tfprune check_sparsity_m_by_n`: which weights of a .keras or .tflite file hold an N:M
pattern."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from tfprune.cli.common import CommandError, check_file, load_keras, m_by_n_flag, reported

__all__ = ["define", "command"]


def define(fv: flags.FlagValues) -> None:
    """The flags of `tfprune check_sparsity_m_by_n`."""
    flags.DEFINE_list(
        "m_by_n", ["2", "4"], "m,n: m zeros in every n consecutive input channels.", flag_values=fv
    )


def command(fv: flags.FlagValues, args: Sequence[str]) -> int:
    """Prints which weights of FILE hold the pattern, and how many."""
    if len(args) != 1:
        raise CommandError("check_sparsity_m_by_n takes exactly one FILE (.keras or .tflite)")
    m, n = m_by_n_flag(fv.m_by_n)
    path = args[0]
    from tfprune.report import check_sparsity_m_by_n

    if path.endswith(".tflite"):
        check_file(path, (".tflite",))
        model = path
    else:
        model = load_keras(path)
    with reported(ValueError, TypeError, RuntimeError):
        report = check_sparsity_m_by_n(model, m, n)
    print(report)
    held = sum(row.holds for row in report)
    print(f"\n{m}:{n} holds in {held} of {len(report)} weights.")
    return 0
