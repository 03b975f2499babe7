"""``python -m fasterrcnn`` (and ``torchrun -m fasterrcnn``): the command line."""

import sys

from fasterrcnn.cli import main

sys.exit(main())
