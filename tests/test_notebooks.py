"""The Colab tutorials run top to bottom, headless, with small parameters.

Each notebook in `colab/` runs in a fresh kernel of this interpreter (not whatever `python3`
kernel the machine has registered), in a temporary directory. Cells tagged `install` (pip) and
`tensorboard` (needs a browser) are skipped; the values below are appended to the cell tagged
`parameters`. An error in any cell fails the test with that cell's traceback.
"""

from __future__ import annotations

import configparser
import json
import pathlib
import re
import shlex
import sys

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLAB = ROOT / "colab"
BADGE = re.compile(
    r"https://colab\.research\.google\.com/github/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)"
    r"/blob/(?P<branch>[\w.-]+)/(?P<path>[\w./-]+\.ipynb)"
)
SKIP_TAGS = frozenset({"install", "tensorboard"})

# Enough steps to touch every code path; each notebook then takes well under a minute.
QUICK_PARAMETERS = {
    "01_quickstart.ipynb": {"EPOCHS": 1},
    "02_export_for_phones.ipynb": {"EPOCHS": 1},
    "03_migrate_from_tfmot.ipynb": {"EPOCHS": 2},
    "04_schedules_and_layers.ipynb": {"EPOCHS": 2},
    "05_prune_a_kerashub_model.ipynb": {"EPOCHS": 1, "TEXT_CHARS": 20_000},
    "06_channel_pruning.ipynb": {"EPOCHS": 1, "LATENCY_RUNS": 20},
    "07_one_shot_pruning.ipynb": {
        "EPOCHS": 1,
        "CALIBRATION_ROWS": 64,
        "SPARSITIES": [0.7],
        "LLM_LAYERS": 2,
        "LLM_SEQUENCES": 8,
    },
}


def _kernel_manager(work_dir: pathlib.Path) -> KernelManager:
    """A manager whose `python3` kernel is this interpreter, found in `work_dir` only."""
    spec_dir = work_dir / ".kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
        # A fresh IPython profile: no startup files or config from the user's home.
        "env": {
            "IPYTHONDIR": str(work_dir / ".kernels" / "ipython"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONHASHSEED": "0",
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
    return KernelManager(
        kernel_name="python3",
        kernel_spec_manager=specs,
        connection_file=str(work_dir / ".kernels" / "connection.json"),
    )


def _with_parameters(source: str, values: dict[str, object]) -> str:
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    return "\n".join([source, "# Overridden for a quick run:", *lines])


def run_notebook(
    path: pathlib.Path,
    work_dir: pathlib.Path,
    parameters: dict[str, object] | None = None,
    timeout: int = 600,
):
    """Executes the notebook at `path` in `work_dir` and returns it with its outputs.

    Args:
        path: The `.ipynb` file.
        work_dir: An empty directory: the kernel's working directory.
        parameters: Values assigned at the end of the cell tagged `parameters`; None keeps the
            cell as it is.
        timeout: Seconds one cell may run.

    Returns:
        The executed `nbformat.NotebookNode`; skipped cells keep no outputs.

    Raises:
        nbclient.exceptions.CellExecutionError: If a cell raises.
    """
    nb = nbformat.read(path, as_version=4)
    if parameters is not None:
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{path.name} needs exactly one cell tagged `parameters`"
        cells[0].source = _with_parameters(cells[0].source, parameters)
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(work_dir),
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(work_dir)}},
    )
    # The client does not own a manager it was given: ask it to shut the kernel down anyway.
    with client.setup_kernel(cleanup_kc=True):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if SKIP_TAGS & set(cell.metadata.get("tags", [])):
                cell.outputs, cell.execution_count = [], None
                continue
            client.execute_cell(cell, index)
    return nb


def test_every_notebook_has_quick_parameters():
    assert sorted(p.name for p in COLAB.glob("*.ipynb")) == sorted(QUICK_PARAMETERS)


@pytest.mark.parametrize("name", sorted(QUICK_PARAMETERS))
def test_notebook_opens_with_badge_install_and_parameters(name):
    cells = nbformat.read(COLAB / name, as_version=4).cells
    assert cells[0].cell_type == "markdown"
    assert [m["path"] for m in BADGE.finditer(cells[0].source)] == [f"colab/{name}"]
    assert cells[1].metadata.get("tags") == ["install"]
    assert cells[1].source.startswith("!pip install")
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert set(QUICK_PARAMETERS[name]) <= set(tagged[0].source.split())


def _package() -> tuple[str, set[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["name"], set(config["options.extras_require"])


@pytest.mark.parametrize("name", sorted(QUICK_PARAMETERS))
def test_install_cell_installs_from_the_repository_its_badge_opens(name):
    """Colab runs the install cell that CI skips: it must name a source that has this package.

    tfprune is not on PyPI, so the cell installs from the repository whose notebook the badge
    opens (the branch the badge names), with extras that exist.
    """
    cells = nbformat.read(COLAB / name, as_version=4).cells
    badge = BADGE.search(cells[0].source)
    words = shlex.split(cells[1].source.removeprefix("!"))
    assert words[:2] == ["pip", "install"]
    (spec,) = [w for w in words[2:] if not w.startswith("-")]
    requirement = Requirement(spec)
    package, extras = _package()
    assert requirement.name == package
    assert requirement.extras <= extras
    url, _, ref = requirement.url.partition("@")
    assert url == f"git+https://github.com/{badge['owner']}/{badge['repo']}"
    assert ref in ("", badge["branch"])
    assert badge["branch"] == "main"  # what a plain git+https install checks out


def test_every_badge_in_the_docs_opens_a_notebook_that_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    badges = [m for page in pages for m in BADGE.finditer(page.read_text())]
    assert badges
    for badge in badges:
        assert (ROOT / badge["path"]).is_file(), badge.group(0)
        assert (badge["owner"], badge["repo"], badge["branch"]) == ("tfprune", "tfprune", "main")


@pytest.mark.parametrize("name", sorted(QUICK_PARAMETERS))
def test_notebook_is_saved_with_outputs(name):
    cells = nbformat.read(COLAB / name, as_version=4).cells
    run = [
        c
        for c in cells
        if c.cell_type == "code" and not SKIP_TAGS & set(c.metadata.get("tags", []))
    ]
    assert all(c.execution_count is not None for c in run), "save the notebook executed"
    assert not [o for c in run for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(QUICK_PARAMETERS))
def test_notebook_runs(name, tmp_path):
    run_notebook(COLAB / name, tmp_path, QUICK_PARAMETERS[name])
