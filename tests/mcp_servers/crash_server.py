"""An MCP server whose `crash` tool ends the process in the middle of the call."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("crash")


@server.tool(description="Dies mid-call.")
def crash() -> str:
    print("crash server: going down", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool(description="Answers while the server lives.")
def alive() -> str:
    return "alive"


if __name__ == "__main__":
    server.run()
