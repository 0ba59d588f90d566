"""Drive an MCP server with the official Python SDK, from a JSON script.

Reads one JSON document on standard input:

    {
      "command": ["server", "--arg", "..."],     # stdio: argv of the MCP server to spawn
      "env": {"NAME": "value"},                 # optional (stdio), added to this environment
      "url": "http://127.0.0.1:8080/mcp",       # Streamable HTTP instead of "command"
      "token": "...",                           # optional (HTTP), sent as Authorization: Bearer
      "timeout_seconds": 30,                    # optional, per request (default 30)
      "steps": [
        {"list_tools": true},                   # every list step follows nextCursor to the end
        {"list_resources": true},
        {"list_resource_templates": true},
        {"list_prompts": true},
        {"ping": true},
        {"call": "read_file", "arguments": {"path": "a.txt"},
         "meta": {"trace": "t1"},               # optional, sent as params._meta
         "progress": true,                      # optional, ask for and record progress
         "max_text_chars": 100},                # optional, cut longer texts
        {"read_resource": "test://static/resource/1"},
        {"get_prompt": "simple-prompt", "arguments": {"topic": "x"}}   # arguments optional
      ]
    }

Prints ONE JSON document on standard output:

    {
      "protocolVersion": "...", "serverInfo": {...}, "capabilities": {...},
      "tools": ["read_file", ...],              # names from the last list_tools step, else null
      "resources": ["file:///a", ...],          # uris from the last list_resources step
      "resourceTemplates": ["file:///{path}"],  # uriTemplates from the last such step
      "prompts": ["simple-prompt", ...],        # names from the last list_prompts step
      "pages": {"tools": 1, "resources": 3},    # pages fetched by the last list step of each kind
      "pings": 1,                               # answered pings
      "calls": [                                # one entry per call step, in order
        {"tool": "read_file", "isError": false, "text": "...",
         "truncated": true, "textLength": 8388608,   # only when cut to max_text_chars
         "structuredContent": {...},            # only when the server sent it
         "meta": {...},                         # only when the result has _meta
         "resourceUris": ["..."],               # only when it holds resource links or embeds
         "progress": [[1.0, 3.0, "..."], ...]}, # only when the step asked for progress
        {"tool": "x", "error": {"code": -32602, "message": "...",
                                "data": {...}}} # a JSON-RPC error ("data" only when sent)
      ],
      "reads": [                                # one entry per read_resource step
        {"uri": "...", "contents": [{"uri": "...", "mimeType": "...", "text": "..."},
                                    {"uri": "...", "blobLength": 12}]},
        {"uri": "...", "error": {...}}
      ],
      "promptResults": [                        # one entry per get_prompt step
        {"prompt": "...", "description": "...",
         "messages": [{"role": "user", "type": "text", "text": "..."},
                      {"role": "user", "type": "resource", "uri": "..."}]},
        {"prompt": "...", "error": {...}}
      ],
      "fatal": "..."                            # only when the session itself broke
    }

The lists, "pages", "reads" and "promptResults" appear only when a step produced them.
The client answers a server's roots/list request with one root, file:///demo-root.
Exit status: 0 when every step ran (tool errors and JSON-RPC errors included), 1 when the
session broke (fatal), 2 when the script on standard input is unusable.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import httpx
from mcp import ClientSession, McpError, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.context import RequestContext

DEMO_ROOT = "file:///demo-root"

# A server whose cursors never end would otherwise keep a list step going forever.
MAX_PAGES = 10_000


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


def content_uris(content: list[Any]) -> list[str]:
    uris = []
    for item in content:
        if isinstance(item, types.ResourceLink):
            uris.append(str(item.uri))
        elif isinstance(item, types.EmbeddedResource):
            uris.append(str(item.resource.uri))
    return uris


def error_entry(e: McpError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": e.error.code, "message": e.error.message}
    if e.error.data is not None:
        error["data"] = e.error.data
    return error


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
        entry["error"] = error_entry(e)
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
        if result.meta is not None:
            entry["meta"] = result.meta
        uris = content_uris(result.content)
        if uris:
            entry["resourceUris"] = uris
    if step.get("progress"):
        entry["progress"] = progress
    return entry


def resource_contents(item: types.TextResourceContents | types.BlobResourceContents) -> dict[str, Any]:
    entry: dict[str, Any] = {"uri": str(item.uri)}
    if item.mimeType is not None:
        entry["mimeType"] = item.mimeType
    if isinstance(item, types.TextResourceContents):
        entry["text"] = item.text
    else:
        entry["blobLength"] = len(item.blob)
    return entry


async def run_read(session: ClientSession, step: dict[str, Any]) -> dict[str, Any]:
    uri = step["read_resource"]
    entry: dict[str, Any] = {"uri": uri}
    try:
        result = await session.read_resource(uri)
    except McpError as e:
        entry["error"] = error_entry(e)
    else:
        entry["contents"] = [resource_contents(item) for item in result.contents]
    return entry


def message_entry(message: types.PromptMessage) -> dict[str, Any]:
    content = message.content
    entry: dict[str, Any] = {"role": message.role, "type": content.type}
    if isinstance(content, types.TextContent):
        entry["text"] = content.text
    elif isinstance(content, types.EmbeddedResource):
        entry.update(resource_contents(content.resource))
    elif isinstance(content, types.ResourceLink):
        entry["uri"] = str(content.uri)
    return entry


async def run_get_prompt(session: ClientSession, step: dict[str, Any]) -> dict[str, Any]:
    name = step["get_prompt"]
    entry: dict[str, Any] = {"prompt": name}
    try:
        result = await session.get_prompt(name, step.get("arguments"))
    except McpError as e:
        entry["error"] = error_entry(e)
    else:
        if result.description is not None:
            entry["description"] = result.description
        entry["messages"] = [message_entry(m) for m in result.messages]
    return entry


async def list_all(
    fetch: Callable[[str | None], Awaitable[Any]], key: str, field: str
) -> tuple[list[str], int]:
    """Every item of a paginated list, following nextCursor; returns (names, pages)."""
    names: list[str] = []
    seen: set[str] = set()
    cursor: str | None = None
    for pages in range(1, MAX_PAGES + 1):
        page = await fetch(cursor)
        names.extend(str(getattr(item, field)) for item in getattr(page, key))
        cursor = page.nextCursor
        if cursor is None:
            return names, pages
        if cursor in seen:
            raise ValueError(f"{key}: the server repeated the cursor {cursor!r}")
        seen.add(cursor)
    raise ValueError(f"{key}: more than {MAX_PAGES} pages")


LISTS: dict[str, tuple[str, str, str]] = {
    # step: (session method, report key, item field)
    "list_tools": ("list_tools", "tools", "name"),
    "list_resources": ("list_resources", "resources", "uri"),
    "list_resource_templates": ("list_resource_templates", "resourceTemplates", "uriTemplate"),
    "list_prompts": ("list_prompts", "prompts", "name"),
}


async def run_steps(session: ClientSession, script: dict[str, Any], report: dict[str, Any]) -> None:
    init = await session.initialize()
    report["protocolVersion"] = init.protocolVersion
    report["serverInfo"] = init.serverInfo.model_dump(exclude_none=True)
    report["capabilities"] = init.capabilities.model_dump(exclude_none=True)
    for step in script.get("steps", []):
        listing = next((s for s in LISTS if step.get(s)), None)
        if listing is not None:
            method, key, field = LISTS[listing]
            names, pages = await list_all(getattr(session, method), key, field)
            report[key] = names
            report.setdefault("pages", {})[key] = pages
        elif step.get("ping"):
            await session.send_ping()
            report["pings"] += 1
        elif "call" in step:
            report["calls"].append(await run_call(session, step))
        elif "read_resource" in step:
            report.setdefault("reads", []).append(await run_read(session, step))
        elif "get_prompt" in step:
            report.setdefault("promptResults", []).append(await run_get_prompt(session, step))
        else:
            raise ValueError(f"unknown step {step!r}")
    report["finished"] = True


@asynccontextmanager
async def connect(script: dict[str, Any]) -> AsyncIterator[tuple[Any, Any]]:
    """The transport's read and write streams: a spawned server, or an HTTP endpoint."""
    if "url" in script:
        headers = {}
        if "token" in script:
            headers["Authorization"] = f"Bearer {script['token']}"
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(script["url"], http_client=http) as (read, write, _):
                yield read, write
    else:
        command = script["command"]
        env = None
        if "env" in script:
            env = {**os.environ, **script["env"]}
        params = StdioServerParameters(command=command[0], args=command[1:], env=env)
        async with stdio_client(params) as (read, write):
            yield read, write


async def run_script(script: dict[str, Any], report: dict[str, Any]) -> None:
    timeout = timedelta(seconds=float(script.get("timeout_seconds", 30)))
    async with connect(script) as (read, write):
        async with ClientSession(
            read, write, read_timeout_seconds=timeout, list_roots_callback=list_roots
        ) as session:
            await run_steps(session, script, report)


def check_script(script: Any) -> None:
    if not isinstance(script, dict):
        raise ValueError("the script must be a JSON object")
    if ("command" in script) == ("url" in script):
        raise ValueError('give exactly one of "command" (stdio) and "url" (Streamable HTTP)')
    if "command" in script and (not isinstance(script["command"], list) or not script["command"]):
        raise ValueError('"command" must be a non-empty list')
    if "url" in script and not isinstance(script["url"], str):
        raise ValueError('"url" must be a string')
    if "token" in script and not isinstance(script["token"], str):
        raise ValueError('"token" must be a string')


def main() -> int:
    try:
        script = json.load(sys.stdin)
        check_script(script)
    except ValueError as e:
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
    if isinstance(e, httpx.HTTPStatusError):
        return f"HTTP {e.response.status_code} from {e.request.url}: {e.response.text[:500]}"
    return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())
