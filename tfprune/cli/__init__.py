"""The `tfprune` command line (`tfprune.cli.main`), one module per command."""

from tfprune.cli.main import main, run

__all__ = ["main", "run"]
