"""The ``densecal`` command-line tool (typer). Verbs live one per module; see ``main``."""

from densecal.cli.main import app, main

__all__ = ["app", "main"]
