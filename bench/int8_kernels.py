"""How LiteRT's kernels on this machine scale when a layer loses half its channels.

Channel pruning removes half the channels of a convolution: its input and its output, a
quarter of the multiply-adds (half for a depthwise convolution). Whether the file runs that
much faster depends on the kernels that run it. For one layer at a time (a 1x1, 3x3 and 5x5
convolution with as many input as output channels, and a 3x3 depthwise convolution, on a
28x28 image, batch 1), this writes float32 and int8 files at each width, times
`Interpreter.invoke()` with the input set once (as LiteRT's benchmark tool does), interleaved
across the files, with LiteRT's default XNNPACK delegate and with its builtin kernels, and
prints each width's median time over that of twice the width.
Run: `python -m bench.int8_kernels [--repeats N] [--size S]`.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

import numpy as np

WIDTHS = (8, 16, 32, 64)
LAYERS = {
    "conv 1x1": (1, False),
    "conv 3x3": (3, False),
    "conv 5x5": (5, False),
    "depthwise 3x3": (3, True),
}
KINDS = ("float32", "int8")


def write_files(
    out_dir: str, size: int, layers: tuple[str, ...] = tuple(LAYERS)
) -> dict[tuple[str, str, int], str]:
    """The one-layer files of `layers`: {(layer, kind, width): path}."""
    import keras

    from tfprune.export import to_tflite

    rng = np.random.default_rng(0)
    files = {}
    for name in layers:
        kernel, depthwise = LAYERS[name]
        for width in WIDTHS:
            inputs = keras.Input((size, size, width))
            if depthwise:
                layer = keras.layers.DepthwiseConv2D(kernel, padding="same")
            else:
                layer = keras.layers.Conv2D(width, kernel, padding="same")
            model = keras.Model(inputs, layer(inputs))
            data = rng.random((16, size, size, width)).astype("float32")
            for kind in KINDS:
                path = os.path.join(out_dir, f"{name.replace(' ', '_')}_{width}_{kind}.tflite")
                quantize = "int8" if kind == "int8" else None
                to_tflite(model, path, quantize=quantize, representative_data=data, batch_size=1)
                files[(name, kind, width)] = path
    return files


def table(files: dict, latency: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: per layer of `files`, kernels and kind, the time at each width and the
    ratio of each width to twice that width (nan where a time rounds to nothing)."""
    lines = [
        "| layer | kernels | kind | "
        + " | ".join(f"{w} ch (µs)" for w in WIDTHS)
        + " | "
        + " | ".join(f"{w}/{2 * w}" for w in WIDTHS[:-1])
        + " | multiply-adds |",
        "|---|---|---|" + "---:|" * (2 * len(WIDTHS)),
    ]
    names = list(dict.fromkeys(name for name, _, _ in files))
    for name in names:
        depthwise = LAYERS[name][1]
        for kernels, measured in latency.items():
            for kind in KINDS:
                t = [measured[files[(name, kind, w)]] for w in WIDTHS]
                ratios = [t[i] / t[i + 1] if t[i + 1] else math.nan for i in range(len(WIDTHS) - 1)]
                macs = "0.50" if depthwise else "0.25"
                lines.append(
                    f"| {name} | {kernels} | {kind} | "
                    + " | ".join(f"{v:.1f}" for v in t)
                    + " | "
                    + " | ".join(f"{r:.2f}" for r in ratios)
                    + f" | {macs} |"
                )
    return lines


def main(argv: list[str] | None = None) -> None:
    from bench.export import interleaved_invoke_us

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="timed invokes per file")
    parser.add_argument("--size", type=int, default=28, help="image height and width")
    parser.add_argument(
        "--layers",
        default=",".join(LAYERS),
        help=f"comma-separated layers to time, of: {', '.join(LAYERS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.size < 1:
        parser.error(f"--repeats and --size must be positive; got {args.repeats}, {args.size}")
    layers = tuple(name.strip() for name in args.layers.split(","))
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        parser.error(f"--layers names unknown layers {unknown}; choose among {list(LAYERS)}")
    with tempfile.TemporaryDirectory(prefix="tfprune-int8-") as out_dir:
        files = write_files(out_dir, args.size, layers)
        paths = list(files.values())
        latency = {
            "XNNPACK": interleaved_invoke_us(paths, args.repeats),
            "builtin": interleaved_invoke_us(paths, args.repeats, builtin=True),
        }
    print("\n".join(table(files, latency)))


if __name__ == "__main__":
    main()
