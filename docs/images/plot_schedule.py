"""Draws docs/images/schedule.png: `PolynomialDecay` against the step, with its mask updates.

Run from the repository root: `python docs/images/plot_schedule.py`.
"""

from __future__ import annotations

import pathlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import tfprune

OUT = pathlib.Path(__file__).with_name("schedule.png")


def main() -> None:
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=200, end_step=1250, frequency=100)
    steps = list(range(1501))
    sparsity = [schedule(t)[1] for t in steps]
    updates = [t for t in steps if schedule(t)[0]]
    fig = Figure(figsize=(8, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(steps, sparsity, label="s_t (the ramp)")
    ax.step(
        updates + [steps[-1]],
        [schedule(t)[1] for t in updates] + [schedule(updates[-1])[1]],
        where="post",
        color="C1",
        label="mask sparsity (changes at updates only)",
    )
    ax.plot(updates, [schedule(t)[1] for t in updates], "o", color="C1", ms=4)
    for x, text in [(200, "begin_step = 200"), (1250, "end_step = 1250")]:
        ax.axvline(x, color="gray", lw=0.8, ls=":")
        ax.annotate(text, (x, 0.05), xytext=(4, 0), textcoords="offset points", fontsize=8)
    ax.set(
        xlabel="training step",
        ylabel="sparsity",
        ylim=(0, 1),
        title="PolynomialDecay(0.0, 0.9, begin_step=200, end_step=1250, frequency=100)",
    )
    ax.title.set_fontsize(10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT, format="png")


if __name__ == "__main__":
    main()
