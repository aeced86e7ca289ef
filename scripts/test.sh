#!/usr/bin/env bash
# Set up (once) and run the whole test suite; extra arguments go to pytest.
# System packages the tests need (PortAudio) are installed first where that is possible (root with
# apt-get); elsewhere this stops before running anything and prints the command to run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/system-deps.sh"
"$here/setup.sh" "speech,starter,dev"
cd "$here/.."
exec .venv/bin/python -m pytest "$@"
