#!/usr/bin/env bash
# Set-up + the whole test suite (unit, trainable smoke, and integration tests on real Ray).
# Extra arguments go to pytest (e.g. -m "not integration" for the fast part only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Headless Chromium for the report's browser test (tests/report); it skips without it.
bash scripts/install_chromium.sh || echo "chromium not installed: the browser checks will skip"
# Lint and types first: cheap, and they catch what tests miss.
python3 -m ruff check .
python3 -m mypy orchestrator trainables
exec python3 -m pytest -q -p no:cacheprovider --timeout 900 "$@"
