#!/usr/bin/env bash
# `make bench-gpu`: the peers comparison (kit serving container, BentoML, LitServe) on an NVIDIA GPU, in the
# few minutes a GPU machine is lent. Refuses (exit 2) where there is no GPU, before installing anything.
#   1. nvidia-smi must list a GPU;
#   2. one venv, .cache/bench-gpu-venv: requirements-bench-gpu.txt (the kit's GPU image pins, onnxruntime-gpu
#      1.26.0 with NVIDIA's CUDA 12 / cuDNN 9 wheels, plus the peers) under constraints-bench-gpu.txt;
#   3. onnxruntime there must offer CUDAExecutionProvider and run a model on it;
#   4. python -m bench.peers --device gpu: the kit's container from that venv with MDK_DEVICE=gpu and
#      PYTHONPATH=layers/python:. (the Dockerfile's layout), the peers on CUDA; bench/results/gpu/peers.{json,md,png}.
# Extra arguments go to bench.peers (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=${BENCH_GPU_VENV:-.cache/bench-gpu-venv}

refuse() { echo "bench-gpu: $*" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 || refuse "no nvidia-smi here: this target needs a machine with an NVIDIA GPU and its driver (the CPU figures are \`make bench\`)"
nvidia-smi -L 2>/dev/null | grep -q '^GPU ' || refuse "nvidia-smi lists no GPU ($(nvidia-smi -L 2>&1 | head -1))"
command -v wrk >/dev/null 2>&1 || make --no-print-directory wrk

if [ ! -f "$VENV/.installed" ] || [ requirements-bench-gpu.txt -nt "$VENV/.installed" ] || [ constraints-bench-gpu.txt -nt "$VENV/.installed" ]; then
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
  "$VENV/bin/python" -m pip install --quiet -r requirements-bench-gpu.txt -c constraints-bench-gpu.txt
  touch "$VENV/.installed"
fi

export PYTHONPATH="$PWD/layers/python:$PWD"
"$VENV/bin/python" - <<'PY' || refuse "onnxruntime-gpu in $VENV cannot run on CUDA (see above): check the driver (CUDA 12 needs >= 525)"
import sys
import onnxruntime as ort
from pathlib import Path
import tempfile
from bench import models
if "CUDAExecutionProvider" not in ort.get_available_providers():
    sys.exit(f"no CUDAExecutionProvider in {ort.get_available_providers()}")
with tempfile.TemporaryDirectory() as tmp:
    path = models.write(Path(tmp) / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        sys.exit(f"the session fell back to {sess.get_providers()}")
print(f"bench-gpu: onnxruntime {ort.__version__} on CUDA", file=sys.stderr)
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2
exec "$VENV/bin/python" -m bench.peers --device gpu --out bench/results/gpu "$@"
