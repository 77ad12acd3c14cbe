"""The `tfprune` command line: `demo`, `export`, `report`, `check_sparsity_m_by_n`,
`prune_one_shot` and `prune_channels`."""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Callable, Sequence

from absl import flags

from tfprune.cli_channels import command as _cmd_channels
from tfprune.cli_channels import define as _define_channels
from tfprune.cli_oneshot import command as _cmd_one_shot
from tfprune.cli_oneshot import define as _define_one_shot

__all__ = ["run", "main", "CommandError", "load_calibration", "load_keras"]

_USAGE = """usage: tfprune COMMAND [flags]

commands:
  demo                 train dense and pruned LeNet-300-100 on the embedded MNIST sample,
                       export them to LiteRT and print the comparison
  export MODEL.keras -o OUT.tflite [--quantize int8 --calibration DATA.npz] [--no-sparse]
                       [--prefer speed] [--batch_size N] [--keep_names] [--compare]
  report FILE          per-layer sparsity of a .keras file, or per-tensor layout and byte
                       split of a .tflite
  check_sparsity_m_by_n FILE [--m_by_n 2,4]
                       which weights of a .keras or .tflite file hold an N:M pattern
  prune_one_shot MODEL.keras --calibration DATA.npz -o OUT.keras [--sparsity 0.5 | --m_by_n 2,4]
                       [--method sparsegpt|wanda|magnitude] [--layers NAME,...] [--batch_size N]
                       prune a trained model from calibration inputs, without training
  prune_channels MODEL.keras -o OUT.keras [--fraction 0.5] [--calibration DATA.npz]
                       [--round_to 4] [--allocation layer|global] [--layers NAME,...]
                       remove channels of a trained model and write the smaller model

Run `tfprune COMMAND --help` for the flags of a command."""


class CommandError(Exception):
    """A user error that the command line reports as one line and exit status 1."""


def _define_demo(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "out_dir", "demo_out", "Directory for models, LiteRT files, plot.", flag_values=fv
    )
    flags.DEFINE_integer(
        "epochs", 12, "Training epochs of each model.", lower_bound=2, flag_values=fv
    )
    flags.DEFINE_float(
        "sparsity",
        0.9,
        "Target sparsity of the pruned model.",
        lower_bound=0,
        upper_bound=0.99,
        flag_values=fv,
    )
    flags.DEFINE_boolean("export", True, "Export and compare LiteRT variants.", flag_values=fv)


def _define_export(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "output", None, "Path of the .tflite file to write.", short_name="o", flag_values=fv
    )
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


def _define_report(fv: flags.FlagValues) -> None:
    del fv


def load_keras(path: str):
    import keras

    _check_file(path, (".keras",))
    if not zipfile.is_zipfile(path):
        raise CommandError(f"{path}: not a .keras file (not a zip archive; truncated or corrupt?)")
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any loader failure is reported as one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CommandError(f"{path}: cannot load the model: {first}") from e


def _check_file(path: str, suffixes: tuple[str, ...]) -> None:
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CommandError(f"{path}: not a file")
    if not path.endswith(suffixes):
        raise CommandError(f"{path}: expected a file ending in {' or '.join(suffixes)}")


def load_calibration(path: str | None):
    import numpy as np

    if path is None:
        return None, None
    _check_file(path, (".npz",))
    try:
        with np.load(path) as data:
            if "x" not in data:
                raise CommandError(f"{path}: the .npz file has no array named `x`")
            return data["x"], (data["y"] if "y" in data else None)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CommandError(f"{path}: cannot read the .npz file: {e}") from e


def _cmd_demo(fv: flags.FlagValues, args: Sequence[str]) -> int:
    from tfprune import demo
    from tfprune.report import plot_pruning

    if args:
        raise CommandError(f"demo takes no positional arguments. Received: {' '.join(args)}")
    out_dir = fv.out_dir
    os.makedirs(out_dir, exist_ok=True)
    print(f"Training LeNet-300-100 on the embedded MNIST sample ({fv.epochs} epochs each)...")
    result = demo.run_demo(epochs=fv.epochs, target_sparsity=fv.sparsity)
    print(result.table())
    pruned_path = os.path.join(out_dir, "lenet_pruned.keras")
    result.pruned.save(pruned_path)
    plot = plot_pruning(
        result.pruned, result.schedule, result.steps, os.path.join(out_dir, "pruning.png")
    )
    print(f"\nWrote {pruned_path} and {plot}")
    if fv.export:
        from tfprune import export

        (x_train, _), (x_test, y_test) = result.data
        rows = export.compare_variants(
            result.pruned,
            out_dir,
            x_eval=x_test,
            y_eval=y_test,
            representative_data=x_train[:256],
        )
        print("\nLiteRT files (default delegate, 1 thread):")
        print(export.format_compare_table(rows))
    return 0


def _cmd_export(fv: flags.FlagValues, args: Sequence[str]) -> int:
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
    try:
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
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        # VerificationError and ConversionError are RuntimeErrors with a one-line summary.
        raise CommandError(str(e).strip().splitlines()[0]) from e
    print(result)
    return 0


def _cmd_report(fv: flags.FlagValues, args: Sequence[str]) -> int:
    del fv
    if len(args) != 1:
        raise CommandError("report takes exactly one FILE (.keras or .tflite)")
    path = args[0]
    if path.endswith(".tflite"):
        _check_file(path, (".tflite",))
        from tfprune import export

        try:
            print(export.describe_tflite(path))
        except ValueError as e:
            raise CommandError(str(e).strip().splitlines()[0]) from e
        return 0
    from tfprune.report import sparsity_report

    print(sparsity_report(load_keras(path)))
    return 0


def _define_check(fv: flags.FlagValues) -> None:
    flags.DEFINE_list(
        "m_by_n", ["2", "4"], "m,n: m zeros in every n consecutive input channels.", flag_values=fv
    )


def _cmd_check(fv: flags.FlagValues, args: Sequence[str]) -> int:
    if len(args) != 1:
        raise CommandError("check_sparsity_m_by_n takes exactly one FILE (.keras or .tflite)")
    try:
        m, n = (int(v) for v in fv.m_by_n)
    except ValueError:
        raise CommandError(
            f"--m_by_n must be two integers m,n; got {','.join(fv.m_by_n)}"
        ) from None
    path = args[0]
    from tfprune.report import check_sparsity_m_by_n

    if path.endswith(".tflite"):
        _check_file(path, (".tflite",))
        model = path
    else:
        model = load_keras(path)
    try:
        report = check_sparsity_m_by_n(model, m, n)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CommandError(str(e).strip().splitlines()[0]) from e
    print(report)
    held = sum(row.holds for row in report)
    print(f"\n{m}:{n} holds in {held} of {len(report)} weights.")
    return 0


_COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "check_sparsity_m_by_n": (_define_check, _cmd_check),
    "demo": (_define_demo, _cmd_demo),
    "export": (_define_export, _cmd_export),
    "prune_channels": (_define_channels, _cmd_channels),
    "prune_one_shot": (_define_one_shot, _cmd_one_shot),
    "report": (_define_report, _cmd_report),
}


def main(argv: Sequence[str]) -> int:
    """Runs the command line on `argv` (program name first) and returns the exit status."""
    argv = list(argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_USAGE)
        return 0 if len(argv) >= 2 else 2
    command = argv[1]
    if command not in _COMMANDS:
        print(f"tfprune: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    define, handler = _COMMANDS[command]
    fv = flags.FlagValues()
    define(fv)
    rest = ["--nosparse" if a == "--no-sparse" else a for a in argv[2:]]
    if any(a in ("-h", "--help", "--helpshort") for a in rest):
        print(f"usage: tfprune {command} [flags]\n\n{fv.get_help(include_special_flags=False)}")
        return 0
    try:
        positional = fv([f"tfprune {command}", *rest])[1:]
    except flags.Error as e:
        print(f"tfprune {command}: {e}", file=sys.stderr)
        return 2
    try:
        return handler(fv, positional)
    except CommandError as e:
        print(f"tfprune {command}: {e}", file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv))
