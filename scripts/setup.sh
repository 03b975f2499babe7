#!/usr/bin/env bash
# Create .venv/ in the repository root (if missing) and install fasterrcnn into it, editable,
# with the development tools. torch==2.13.0 (CPU) is installed first; it satisfies the
# package's torch range, so pip does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import fasterrcnn, pytest, pycocotools" 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip install -q -e ".[dev]"
fi
