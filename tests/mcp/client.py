"""A real MCP client (the `mcp` Python SDK) that starts `tracer mcp` over stdio, lists
its tools and calls each one given.

usage: client.py TRACER CALLS.json

CALLS.json is a list of [label, tool name, arguments]. Prints one JSON object:
server (name, version), tools (name to input schema), and results (label to
{is_error, structured, text}).
"""
import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def field(obj, snake, camel):
    """A result field by its name in the SDK's 2.x (snake_case) or 1.x (camelCase)."""
    return getattr(obj, snake) if hasattr(obj, snake) else getattr(obj, camel)


async def main(tracer, calls):
    server = StdioServerParameters(command=tracer, args=["mcp"])
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            initialized = await session.initialize()
            listed = await session.list_tools()
            results = {}
            for label, tool, arguments in calls:
                result = await session.call_tool(tool, arguments)
                texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
                results[label] = {
                    "is_error": bool(field(result, "is_error", "isError")),
                    "structured": field(result, "structured_content", "structuredContent"),
                    "text": "\n".join(texts),
                }
    info = field(initialized, "server_info", "serverInfo")
    return {
        "server": {"name": info.name, "version": info.version},
        "protocol": str(field(initialized, "protocol_version", "protocolVersion")),
        "tools": {t.name: field(t, "input_schema", "inputSchema") for t in listed.tools},
        "results": results,
    }


if __name__ == "__main__":
    with open(sys.argv[2]) as f:
        calls = json.load(f)
    print(json.dumps(asyncio.run(main(sys.argv[1], calls))))
