"""`tfprune export`: write a .keras model as a verified LiteRT file."""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from tfprune.cli.common import CommandError, load_calibration, load_keras, reported

__all__ = ["define", "command"]


def define(fv: flags.FlagValues) -> None:
    """The flags of `tfprune export`."""
    flags.DEFINE_string(
        "output", None, "Path of the .tflite file to write.", short_name="o", flag_values=fv
    )
    # Inside the command's functions: `tfprune.export` loads Keras, and with it TensorFlow,
    # which `tfprune --help` does without.
    from tfprune.export.modes import MODES

    flags.DEFINE_enum(
        "quantize",
        "none",
        ["none", *(q for q in MODES if q is not None)],
        "Quantization mode (none: float32).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "calibration",
        None,
        ".npz file with array `x` (and optionally `y`) for int8.",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "sparse", True, "Store pruned weights sparsely (--no-sparse: dense).", flag_values=fv
    )
    flags.DEFINE_enum(
        "prefer",
        "size",
        ["size", "speed"],
        "Sparse layouts for the smallest file (size) or for dense-speed kernels (speed).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "batch_size",
        None,
        "Fix the batch size of the file's inputs (default: any batch).",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "keep_names",
        False,
        "Keep tensor names in the file (the runtime reads none).",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "compare", False, "Export every variant and print one table.", flag_values=fv
    )
    flags.DEFINE_boolean(
        "progress",
        True,
        "Print a line on stderr as each stage ends (--noprogress: only the result).",
        flag_values=fv,
    )


def command(fv: flags.FlagValues, args: Sequence[str]) -> int:
    """Exports MODEL.keras to OUT.tflite (or every variant with --compare); prints the result."""
    if len(args) != 1:
        raise CommandError("export takes exactly one MODEL.keras argument")
    model = load_keras(args[0])
    x, y = load_calibration(fv.calibration)
    from tfprune import export

    if fv.compare:
        out_dir = os.path.dirname(fv.output) if fv.output else "."
        if x is None:
            raise CommandError("--compare needs --calibration DATA.npz (for int8 and accuracy)")
        rows = export.compare_variants(
            model, out_dir or ".", x_eval=x, y_eval=y, representative_data=x
        )
        print(export.format_compare_table(rows))
        return 0
    if not fv.output:
        raise CommandError("export needs -o OUT.tflite")
    quantize = None if fv.quantize == "none" else fv.quantize
    if quantize == "int8" and x is None:
        raise CommandError("--quantize int8 needs --calibration DATA.npz with an array `x`")
    # VerificationError and ConversionError are RuntimeErrors with a one-line summary.
    with reported(ValueError, TypeError, OSError, RuntimeError):
        result = export.to_tflite(
            model,
            fv.output,
            quantize=quantize,
            representative_data=x,
            sparse=fv.sparse,
            prefer=fv.prefer,
            batch_size=fv.batch_size,
            keep_names=fv.keep_names,
            verbose=fv.progress,
        )
    print(result)
    return 0
