"""The `pid` command line: decode, demo, info, bench."""

from pid.cli.commands import main

__all__ = ["main"]
