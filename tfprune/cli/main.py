"""The `tfprune` command line: one module per command, each with `define` (its flags) and
`command` (what it does); this module only dispatches.

The commands import tfprune's other modules inside their functions: those load Keras, and with
it TensorFlow, which `tfprune --help` and a mistyped command do without.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from absl import flags

from tfprune.cli import channels, check, demo, export, oneshot, report
from tfprune.cli.common import CommandError

__all__ = ["main"]

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
                       [--allocation layer|global|owl]
                       prune a trained model from calibration inputs, without training
  prune_channels MODEL.keras -o OUT.keras [--fraction 0.5] [--calibration DATA.npz]
                       [--round_to 4] [--allocation layer|global] [--layers NAME,...]
                       remove channels of a trained model and write the smaller model

Run `tfprune COMMAND --help` for the flags of a command."""


_COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "check_sparsity_m_by_n": (check.define, check.command),
    "demo": (demo.define, demo.command),
    "export": (export.define, export.command),
    "prune_channels": (channels.define, channels.command),
    "prune_one_shot": (oneshot.define, oneshot.command),
    "report": (report.define, report.command),
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
