#!/usr/bin/env bash
# Set up (once) and run edgeassist; with no arguments it opens the chat.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/setup.sh" "speech,starter,mcp"
exec "$here/../.venv/bin/edgeassist" "$@"
