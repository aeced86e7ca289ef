"""Not an MCP server: it never answers, so `initialize` hangs until the client gives up.

Plain, it reads its stdin until it closes and then exits (as the MCP spec asks of a server).
With `--stubborn` it also ignores its stdin closing and SIGTERM: only SIGKILL ends it.
"""

from __future__ import annotations

import signal
import sys

print("silent server: listening to nobody", file=sys.stderr, flush=True)
if sys.argv[1:2] == ["--stubborn"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        signal.pause()  # (woken by a signal it ignores, it waits again: only SIGKILL ends it)
for _line in sys.stdin:
    pass  # (what the client sends is not read: nothing is ever answered)
