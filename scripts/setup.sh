#!/usr/bin/env bash
# Create .venv/ in the repository root (if missing) and install fasterrcnn into it, editable,
# with the development tools and the serve, export, int8, video and track extras. torch==2.13.0
# (CPU) is installed first; it satisfies the package's torch range, so pip does not pull a
# CUDA build.
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
pip_install -e ".[dev,serve,export,int8,video,track]"
# ByteTrack's library names opencv-python, a second OpenCV beside the headless one this package
# uses; it runs on the headless one, so it is installed without its requirements (the track
# extra above holds the others).
pip_install --no-deps "trackers>=2.6"
.venv/bin/python -c "import fasterrcnn, PIL, yaml, matplotlib, pytest, pycocotools, faster_coco_eval, fastapi, uvicorn, multipart, selenium, onnx, onnxruntime, openvino, nncf, av, trackers"
