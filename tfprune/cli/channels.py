"""`tfprune prune_channels`: remove channels of a trained .keras model, write the smaller one."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from tfprune.cli.common import CommandError, load_calibration, load_keras, reported
from tfprune.utils.files import atomic_path
from tfprune.utils.table import format_table

__all__ = ["define", "command"]


def define(fv: flags.FlagValues) -> None:
    """The flags of `tfprune prune_channels`."""
    flags.DEFINE_string(
        "output", None, "Path of the trimmed .keras file to write.", short_name="o", flag_values=fv
    )
    flags.DEFINE_float(
        "fraction", 0.5, "Share of the channel groups to remove.", lower_bound=0, flag_values=fv
    )
    flags.DEFINE_string(
        "calibration",
        None,
        ".npz file with inputs as array `x`: refit the layers that lose inputs (update step).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "round_to", 1, "Keep channel counts multiples of this.", lower_bound=1, flag_values=fv
    )
    flags.DEFINE_enum(
        "allocation",
        "layer",
        ["layer", "global"],
        "Rank channels per layer or across all.",
        flag_values=fv,
    )
    flags.DEFINE_list(
        "layers", None, "Layer name patterns whose channels may go (default: all).", flag_values=fv
    )
    flags.DEFINE_boolean(
        "keep_unsupported",
        False,
        "Keep the channels of layers the grouping does not know, instead of failing.",
        flag_values=fv,
    )


def command(fv: flags.FlagValues, args: Sequence[str]) -> int:
    """Prunes MODEL.keras by channels one-shot, trims it, writes OUT.keras, prints each layer."""
    if len(args) != 1:
        raise CommandError("prune_channels takes exactly one MODEL.keras argument")
    if not fv.output or not fv.output.endswith(".keras"):
        raise CommandError("prune_channels needs -o OUT.keras")
    model = load_keras(args[0])
    x = None if fv.calibration is None else load_calibration(fv.calibration)[0]
    # Inside the command: tfprune's modules load Keras, and with it TensorFlow.
    from tfprune.channels import prune_channels, trim
    from tfprune.schedules import ConstantSparsity

    with reported(ValueError, TypeError, OSError):
        pruned = prune_channels(
            model,
            ConstantSparsity(fv.fraction, begin_step=0),
            round_to=fv.round_to,
            layers=fv.layers,
            allocation=fv.allocation,
            unsupported="keep" if fv.keep_unsupported else "raise",
        )
        small = trim(pruned, calibration_data=x)
        with atomic_path(fv.output, suffix=".keras") as temp:
            small.save(temp)
    rows = []
    for before in model.layers:
        after = small.get_layer(before.name) if before.weights else None
        if after is not None and before.weights[0].shape != after.weights[0].shape:
            rows.append(
                [
                    before.name,
                    str(tuple(before.weights[0].shape)),
                    str(tuple(after.weights[0].shape)),
                ]
            )
    print(format_table(["layer", "first weight before", "after"], rows))
    print(
        f"\n{model.count_params():,} -> {small.count_params():,} parameters"
        f"{' (updated on the calibration inputs)' if x is not None else ''}; wrote {fv.output}"
    )
    return 0
