#!/usr/bin/env bash
# Set up (once) and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/setup.sh" "speech,starter,dev"
cd "$here/.."
exec .venv/bin/python -m pytest "$@"
