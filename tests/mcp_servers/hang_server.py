"""An MCP server whose `hang` tool never answers (and `quick` does)."""

from __future__ import annotations

import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("hang")


@server.tool(description="Never answers.")
async def hang() -> str:
    print("hang server: hanging", file=sys.stderr, flush=True)  # the tests wait for this line in the log
    await anyio.sleep_forever()
    return "never"


@server.tool(description="Answers at once.")
def quick() -> str:
    return "quick"


if __name__ == "__main__":
    server.run()
