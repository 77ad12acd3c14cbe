"""`tfprune prune_one_shot`: prune a trained .keras model from calibration inputs."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from tfprune.cli.common import (
    CommandError,
    load_calibration,
    load_keras,
    m_by_n_flag,
    reported,
)
from tfprune.utils.files import atomic_path
from tfprune.utils.table import format_table

__all__ = ["define", "command"]


def define(fv: flags.FlagValues) -> None:
    """The flags of `tfprune prune_one_shot`."""
    flags.DEFINE_string(
        "output", None, "Path of the pruned .keras file to write.", short_name="o", flag_values=fv
    )
    flags.DEFINE_string(
        "calibration", None, ".npz file with the calibration inputs as array `x`.", flag_values=fv
    )
    flags.DEFINE_float(
        "sparsity", 0.5, "Fraction of each weight to prune.", lower_bound=0, flag_values=fv
    )
    flags.DEFINE_list(
        "m_by_n", None, "m,n: prune to m zeros in every n input channels instead.", flag_values=fv
    )
    flags.DEFINE_enum(
        "method",
        "sparsegpt",
        ["sparsegpt", "wanda", "magnitude"],
        "One-shot method.",
        flag_values=fv,
    )
    flags.DEFINE_list(
        "layers",
        None,
        "Layer name patterns to prune (* and ? wildcards; default: all).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "batch_size", 32, "Calibration rows per forward pass.", lower_bound=1, flag_values=fv
    )
    flags.DEFINE_enum(
        "allocation",
        "layer",
        ["layer", "global", "owl"],
        "layer: every weight to --sparsity; global: one magnitude ranking over all weights "
        "(--method magnitude); owl: per block by the outliers (same total).",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "progress", True, "Print a line on stderr per pruned weight.", flag_values=fv
    )


def command(fv: flags.FlagValues, args: Sequence[str]) -> int:
    """Prunes MODEL.keras one-shot and writes OUT.keras; prints a line per weight."""
    if len(args) != 1:
        raise CommandError("prune_one_shot takes exactly one MODEL.keras argument")
    if not fv.output or not fv.output.endswith(".keras"):
        raise CommandError("prune_one_shot needs -o OUT.keras")
    if fv.calibration is None:
        raise CommandError("prune_one_shot needs --calibration DATA.npz with an array `x`")
    pattern = None if fv.m_by_n is None else m_by_n_flag(fv.m_by_n)
    model = load_keras(args[0])
    x, _ = load_calibration(fv.calibration)
    # Inside the command: tfprune's modules load Keras, and with it TensorFlow.
    from tfprune.oneshot import prune_one_shot

    with reported(ValueError, TypeError, OSError):
        pruned, stats = prune_one_shot(
            model,
            x,
            None if pattern else fv.sparsity,
            method=fv.method,
            pattern=pattern,
            layers=fv.layers,
            batch_size=fv.batch_size,
            allocation=fv.allocation,
            verbose=2 if fv.progress else 0,
            return_stats=True,
        )
        with atomic_path(fv.output, suffix=".keras") as temp:
            pruned.save(temp)
    rows = [
        [
            s.name,
            s.method,
            "-" if s.inputs is None else str(s.inputs),
            f"{s.sparsity:.2%}",
            "-" if s.error is None else f"{s.error:.4g} / {s.error_without_update:.4g}",
        ]
        for s in stats
    ]
    print(
        format_table(["weight", "method", "inputs", "sparsity", "output error / mask alone"], rows)
    )
    print(f"\nwrote {fv.output}")
    return 0
