"""`tfprune demo`: train dense and pruned LeNet-300-100 on the embedded MNIST sample, export
them to LiteRT and print the comparison."""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from tfprune.cli.common import CommandError

__all__ = ["define", "command"]


def define(fv: flags.FlagValues) -> None:
    """The flags of `tfprune demo`."""
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


def command(fv: flags.FlagValues, args: Sequence[str]) -> int:
    """Trains the two models, writes them and their LiteRT files, prints the comparisons."""
    # Inside the command: tfprune's modules load Keras, and with it TensorFlow.
    from tfprune import demo, export
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
