"""Drive an MCP server over stdio with the official Python SDK, from a JSON script.

Reads one JSON document on standard input:

    {
      "command": ["server", "--arg", "..."],     # argv of the MCP server to spawn
      "env": {"NAME": "value"},                 # optional, added to this process's environment
      "timeout_seconds": 30,                    # optional, per request (default 30)
      "steps": [
        {"list_tools": true},
        {"ping": true},
        {"call": "read_file", "arguments": {"path": "a.txt"},
         "meta": {"trace": "t1"},               # optional, sent as params._meta
         "progress": true,                      # optional, ask for and record progress
         "max_text_chars": 100}                 # optional, cut longer texts
      ]
    }

Prints ONE JSON document on standard output:

    {
      "protocolVersion": "...", "serverInfo": {...}, "capabilities": {...},
      "tools": ["read_file", ...],              # names from the last list_tools step, else null
      "pings": 1,                               # answered pings
      "calls": [                                # one entry per call step, in order
        {"tool": "read_file", "isError": false, "text": "...",
         "truncated": true, "textLength": 8388608,   # only when cut to max_text_chars
         "structuredContent": {...},            # only when the server sent it
         "progress": [[1.0, 3.0, "..."], ...]}, # only when the step asked for progress
        {"tool": "x", "error": {"code": -32602, "message": "..."}}   # a JSON-RPC error
      ],
      "fatal": "..."                            # only when the session itself broke
    }

The client answers a server's roots/list request with one root, file:///demo-root.
Exit status: 0 when every step ran (tool errors and JSON-RPC errors included), 1 when the
session broke (fatal), 2 when the script on standard input is unusable.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any

import anyio
from mcp import ClientSession, McpError, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.context import RequestContext

DEMO_ROOT = "file:///demo-root"


async def list_roots(_context: RequestContext[ClientSession, Any]) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri=DEMO_ROOT, name="demo-root")])


def content_text(content: list[Any]) -> str:
    parts = []
    for item in content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        else:
            parts.append(f"[{item.type}]")
    return "\n".join(parts)


async def run_call(session: ClientSession, step: dict[str, Any]) -> dict[str, Any]:
    name = step["call"]
    entry: dict[str, Any] = {"tool": name}
    progress: list[list[Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append([value, total, message])

    try:
        result = await session.call_tool(
            name,
            step.get("arguments"),
            progress_callback=on_progress if step.get("progress") else None,
            meta=step.get("meta"),
        )
    except McpError as e:
        entry["error"] = {"code": e.error.code, "message": e.error.message}
    else:
        entry["isError"] = bool(result.isError)
        text = content_text(result.content)
        limit = step.get("max_text_chars")
        if isinstance(limit, int) and len(text) > limit:
            entry["truncated"] = True
            entry["textLength"] = len(text)
            text = text[:limit]
        entry["text"] = text
        if result.structuredContent is not None:
            entry["structuredContent"] = result.structuredContent
    if step.get("progress"):
        entry["progress"] = progress
    return entry


async def run_script(script: dict[str, Any], report: dict[str, Any]) -> None:
    command = script["command"]
    env = None
    if "env" in script:
        env = {**os.environ, **script["env"]}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    timeout = timedelta(seconds=float(script.get("timeout_seconds", 30)))
    async with stdio_client(params) as (read, write):
        async with ClientSession(
            read, write, read_timeout_seconds=timeout, list_roots_callback=list_roots
        ) as session:
            init = await session.initialize()
            report["protocolVersion"] = init.protocolVersion
            report["serverInfo"] = init.serverInfo.model_dump(exclude_none=True)
            report["capabilities"] = init.capabilities.model_dump(exclude_none=True)
            for step in script.get("steps", []):
                if step.get("list_tools"):
                    listed = await session.list_tools()
                    report["tools"] = [tool.name for tool in listed.tools]
                elif step.get("ping"):
                    await session.send_ping()
                    report["pings"] += 1
                elif "call" in step:
                    report["calls"].append(await run_call(session, step))
                else:
                    raise ValueError(f"unknown step {step!r}")
            report["finished"] = True


def main() -> int:
    try:
        script = json.load(sys.stdin)
        if not isinstance(script.get("command"), list) or not script["command"]:
            raise ValueError('"command" must be a non-empty list')
    except (ValueError, AttributeError) as e:
        print(json.dumps({"fatal": f"unusable script: {e}"}))
        return 2
    report: dict[str, Any] = {
        "protocolVersion": None,
        "serverInfo": None,
        "capabilities": None,
        "tools": None,
        "pings": 0,
        "calls": [],
        "finished": False,
    }
    status = 0
    try:
        asyncio.run(run_script(script, report))
    except BaseException as e:  # noqa: BLE001 - report whatever broke the session, then fail
        if isinstance(e, KeyboardInterrupt):
            raise
        if report["finished"] and only_teardown_errors(e):
            # The SDK's reader can still be delivering a late server message while the
            # session closes; every step ran, so that is noise, not a failure.
            print(f"mcp_client: ignored at shutdown: {describe(e)}", file=sys.stderr)
        else:
            report["fatal"] = describe(e)
            status = 1
    del report["finished"]
    print(json.dumps(report))
    return status


def only_teardown_errors(e: BaseException) -> bool:
    if isinstance(e, BaseExceptionGroup):
        return all(only_teardown_errors(inner) for inner in e.exceptions)
    return isinstance(e, (anyio.BrokenResourceError, anyio.ClosedResourceError))


def describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in e.exceptions)
    if isinstance(e, McpError):
        return f"McpError {e.error.code}: {e.error.message}"
    return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())
