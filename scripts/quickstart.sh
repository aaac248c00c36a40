#!/usr/bin/env bash
# Set-up + the embedded-default sweep: installs the project, then runs examples/quickstart.yaml on
# a local Ray started for it. Extra arguments go to `sweep run` (e.g. --set num_samples=4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec sweep run examples/quickstart.yaml "$@"
