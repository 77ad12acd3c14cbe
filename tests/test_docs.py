"""The documentation site builds with `mkdocs build --strict` and without a single warning."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").glob("*.md"))
    assert pages, "docs/ holds no page"
    assert [page for page in pages if f": {page}" not in config] == []


def test_every_public_name_is_in_the_api_reference():
    import tfprune
    import tfprune.export

    api = (ROOT / "docs" / "api.md").read_text()
    names = [f"tfprune.{n}" for n in tfprune.__all__ if n not in ("datasets", "export")]
    names += [f"tfprune.export.{n}" for n in tfprune.export.__all__]
    names += ["tfprune.datasets.load_mnist_sample"]
    assert [name for name in names if f"::: {name}\n" not in api] == []


@pytest.mark.slow
def test_site_builds_strict_without_warnings(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert warnings == [], log
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "api" / "index.html").is_file()
