#!/usr/bin/env bash
# Create .venv/ in the repository root (if missing) and install fasterrcnn into it, editable,
# with the development tools and the serve, export and video extras. torch==2.13.0 (CPU) is
# installed first; it satisfies the package's torch range, so pip does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# pip's output is shown only when it fails.
pip_install() {
    local log
    log=$(mktemp)
    if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip_install "torch==2.13.0"
fi
pip_install -e ".[dev,serve,export,video]"
.venv/bin/python -c "import fasterrcnn, PIL, yaml, matplotlib, pytest, pycocotools, faster_coco_eval, fastapi, uvicorn, multipart, selenium, onnx, onnxruntime, openvino, av"
