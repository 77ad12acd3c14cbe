"""The `tfprune` command line (`tfprune.cli.main`), one module per command; the console script
that runs it is `tfprune_cli.run`."""

from tfprune.cli.main import main

__all__ = ["main"]
