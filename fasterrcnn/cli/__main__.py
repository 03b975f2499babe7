"""``python -m fasterrcnn.cli``: the command line."""

from fasterrcnn.cli import run

run()
