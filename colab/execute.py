"""Re-executes the tutorials at their full parameters and saves them with their outputs.

Run from the repository root: `python colab/execute.py [NAME.ipynb ...]` (all notebooks by
default). Cells tagged `install` and `tensorboard` are skipped, as in `tests/test_notebooks.py`.
Log lines that TensorFlow writes outside the notebook's own output (CUDA probing before logging
is set up, SavedModel asset messages, converter settings), and tqdm's notice that ipywidgets is
not installed (KerasHub loads tqdm), are left out of the saved outputs.
"""

from __future__ import annotations

import pathlib
import re
import sys
import tempfile
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_notebooks import COLAB, run_notebook  # noqa: E402

NOISE = re.compile(
    r"^(WARNING: All log messages before absl|[IEW]0000 |INFO:tensorflow:Assets written"
    r"|INFO: Created TensorFlow Lite XNNPACK|fully_quantize: "
    r"|.*TqdmWarning: IProgress not found|  from \.autonotebook import tqdm)"
)


def _clean(output):
    if output.output_type != "stream":
        return output
    output.text = "".join(line for line in output.text.splitlines(True) if not NOISE.match(line))
    return output if output.text.strip() else None


def main(names: list[str]) -> None:
    for name in names or sorted(p.name for p in COLAB.glob("*.ipynb")):
        start = time.time()
        with tempfile.TemporaryDirectory() as work_dir:
            nb = run_notebook(COLAB / name, pathlib.Path(work_dir))
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in map(_clean, cell.outputs) if o is not None]
        nbformat.write(nb, COLAB / name)
        print(f"{name}: {time.time() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
