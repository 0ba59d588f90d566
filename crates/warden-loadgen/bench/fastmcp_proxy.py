"""A FastMCP proxy in front of a stdio MCP server, serving Streamable HTTP at /mcp.

Used by scripts/bench-gateway to compare Warden with a plain Python proxy on the same upstream:
    python fastmcp_proxy.py PORT -- COMMAND [ARGS...]
"""

import sys
import warnings

from fastmcp import FastMCP
from fastmcp.client.transports import StdioTransport


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print("usage: fastmcp_proxy.py PORT -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    command, args = sys.argv[3], sys.argv[4:]
    # One upstream process, kept alive across requests, as Warden keeps its upstreams.
    upstream = StdioTransport(command=command, args=args, keep_alive=True)
    # FastMCP 3 marks as_proxy deprecated in favour of create_proxy, which it calls; the
    # warning would only clutter the benchmark's output.
    warnings.filterwarnings("ignore", message=r".*as_proxy\(\) is deprecated")
    proxy = FastMCP.as_proxy(upstream, name="fastmcp-proxy")
    proxy.run(
        transport="http",
        host="127.0.0.1",
        port=port,
        path="/mcp",
        show_banner=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
