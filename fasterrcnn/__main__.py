"""``python -m fasterrcnn`` (and ``torchrun -m fasterrcnn``): the command line."""

from fasterrcnn.cli import run

run()
