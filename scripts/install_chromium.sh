#!/usr/bin/env bash
# Install headless Chromium (Debian package `chromium`) for the HTML report test
# (tests/report/test_report_browser.py). Idempotent: does nothing when it is already there.
#
#   bash scripts/install_chromium.sh          # from the CI set-up, as root (or with sudo)
#
# Without Chromium those tests skip with a reason; everything else runs.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(command -v chromium)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_chromium.sh: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium.sh: no apt-get here; install Chromium with your package manager" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(command -v chromium) ($(chromium --version 2>/dev/null || echo '?'))"
