// Drive an MCP server with the official TypeScript SDK, from a JSON script.
//
// The same contract as mcp_client.py (see its docstring), for a subset of the steps:
// list_tools, list_resources, list_resource_templates, list_prompts (each following
// nextCursor to the end), ping, call (arguments, meta, progress, max_text_chars),
// read_resource and get_prompt. The transport is stdio ("command", optional "env") or
// Streamable HTTP ("url", optional "token" sent as Authorization: Bearer).
//
// Prints ONE JSON report on standard output, shaped like mcp_client.py's. Exit status: 0 when
// every step ran (tool errors and JSON-RPC errors included), 1 when the session broke
// ("fatal"), 2 when the script on standard input is unusable.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ListRootsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";

const DEMO_ROOT = "file:///demo-root";

// A server whose cursors never end would otherwise keep a list step going forever.
const MAX_PAGES = 10_000;

const LISTS = {
  // step: [client method, result key, report key, item field]
  list_tools: ["listTools", "tools", "tools", "name"],
  list_resources: ["listResources", "resources", "resources", "uri"],
  list_resource_templates: ["listResourceTemplates", "resourceTemplates", "resourceTemplates", "uriTemplate"],
  list_prompts: ["listPrompts", "prompts", "prompts", "name"],
};

class ScriptError extends Error {}

function checkScript(script) {
  if (script === null || typeof script !== "object" || Array.isArray(script)) {
    throw new ScriptError("the script must be a JSON object");
  }
  if (("command" in script) === ("url" in script)) {
    throw new ScriptError('give exactly one of "command" (stdio) and "url" (Streamable HTTP)');
  }
  if ("command" in script && (!Array.isArray(script.command) || script.command.length === 0)) {
    throw new ScriptError('"command" must be a non-empty list');
  }
  if ("url" in script && typeof script.url !== "string") {
    throw new ScriptError('"url" must be a string');
  }
  if ("token" in script && typeof script.token !== "string") {
    throw new ScriptError('"token" must be a string');
  }
}

function transportFor(script) {
  if ("url" in script) {
    const headers = {};
    if ("token" in script) headers.Authorization = `Bearer ${script.token}`;
    return new StreamableHTTPClientTransport(new URL(script.url), { requestInit: { headers } });
  }
  const [command, ...args] = script.command;
  // Like the Python SDK: a small default environment, plus what the script adds.
  const env = { ...getDefaultEnvironment(), ...(script.env ?? {}) };
  return new StdioClientTransport({ command, args, env, stderr: "inherit" });
}

function errorEntry(e) {
  const error = { code: e.code, message: e.message };
  if (e.data !== undefined) error.data = e.data;
  return error;
}

function contentText(content) {
  return (content ?? [])
    .map((item) => (item.type === "text" ? item.text : `[${item.type}]`))
    .join("\n");
}

function contentUris(content) {
  return (content ?? []).flatMap((item) => {
    if (item.type === "resource_link") return [item.uri];
    if (item.type === "resource") return [item.resource.uri];
    return [];
  });
}

function resourceContents(item) {
  const entry = { uri: item.uri };
  if (item.mimeType !== undefined) entry.mimeType = item.mimeType;
  if (typeof item.text === "string") entry.text = item.text;
  else if (typeof item.blob === "string") entry.blobLength = item.blob.length;
  return entry;
}

function messageEntry(message) {
  const content = message.content;
  const entry = { role: message.role, type: content.type };
  if (content.type === "text") entry.text = content.text;
  else if (content.type === "resource") Object.assign(entry, resourceContents(content.resource));
  else if (content.type === "resource_link") entry.uri = content.uri;
  return entry;
}

async function listAll(client, listing, options) {
  const [method, key, , field] = LISTS[listing];
  const names = [];
  const seen = new Set();
  let cursor;
  for (let pages = 1; pages <= MAX_PAGES; pages++) {
    const page = await client[method](cursor === undefined ? {} : { cursor }, options);
    for (const item of page[key] ?? []) names.push(String(item[field]));
    cursor = page.nextCursor;
    if (cursor === undefined || cursor === null) return [names, pages];
    if (seen.has(cursor)) throw new Error(`${key}: the server repeated the cursor ${JSON.stringify(cursor)}`);
    seen.add(cursor);
  }
  throw new Error(`${key}: more than ${MAX_PAGES} pages`);
}

// JSON-RPC errors are part of the report; anything else breaks the session.
async function reportingErrors(entry, run) {
  try {
    await run();
  } catch (e) {
    if (!(e instanceof McpError)) throw e;
    entry.error = errorEntry(e);
  }
  return entry;
}

async function runCall(client, step, options) {
  const entry = { tool: step.call };
  const progress = [];
  const callOptions = { ...options };
  if (step.progress) {
    callOptions.onprogress = (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]);
  }
  const params = { name: step.call, arguments: step.arguments ?? {} };
  if (step.meta !== undefined) params._meta = step.meta;
  await reportingErrors(entry, async () => {
    const result = await client.callTool(params, undefined, callOptions);
    entry.isError = Boolean(result.isError);
    let text = contentText(result.content);
    const limit = step.max_text_chars;
    if (Number.isInteger(limit) && text.length > limit) {
      entry.truncated = true;
      entry.textLength = text.length;
      text = text.slice(0, limit);
    }
    entry.text = text;
    if (result.structuredContent !== undefined) entry.structuredContent = result.structuredContent;
    if (result._meta !== undefined) entry.meta = result._meta;
    const uris = contentUris(result.content);
    if (uris.length > 0) entry.resourceUris = uris;
  });
  if (step.progress) entry.progress = progress;
  return entry;
}

async function runRead(client, step, options) {
  const entry = { uri: step.read_resource };
  return reportingErrors(entry, async () => {
    const result = await client.readResource({ uri: step.read_resource }, options);
    entry.contents = result.contents.map(resourceContents);
  });
}

async function runGetPrompt(client, step, options) {
  const entry = { prompt: step.get_prompt };
  return reportingErrors(entry, async () => {
    const params = { name: step.get_prompt };
    if (step.arguments !== undefined) params.arguments = step.arguments;
    const result = await client.getPrompt(params, options);
    if (result.description !== undefined) entry.description = result.description;
    entry.messages = result.messages.map(messageEntry);
  });
}

async function runScript(script, report) {
  const options = { timeout: Number(script.timeout_seconds ?? 30) * 1000 };
  const client = new Client(
    { name: "warden-interop-ts", version: "1.0.0" },
    { capabilities: { roots: {} } },
  );
  client.setRequestHandler(ListRootsRequestSchema, async () => ({
    roots: [{ uri: DEMO_ROOT, name: "demo-root" }],
  }));
  const transport = transportFor(script);
  // The client keeps the negotiated version to itself; it hands it to the transport.
  const setVersion = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (version) => {
    report.protocolVersion = version;
    setVersion?.(version);
  };
  await client.connect(transport, options);
  try {
    report.serverInfo = client.getServerVersion() ?? null;
    report.capabilities = client.getServerCapabilities() ?? null;
    for (const step of script.steps ?? []) {
      const listing = Object.keys(LISTS).find((s) => step[s]);
      if (listing !== undefined) {
        const [names, pages] = await listAll(client, listing, options);
        const reportKey = LISTS[listing][2];
        report[reportKey] = names;
        report.pages = { ...(report.pages ?? {}), [reportKey]: pages };
      } else if (step.ping) {
        await client.ping(options);
        report.pings += 1;
      } else if ("call" in step) {
        report.calls.push(await runCall(client, step, options));
      } else if ("read_resource" in step) {
        (report.reads ??= []).push(await runRead(client, step, options));
      } else if ("get_prompt" in step) {
        (report.promptResults ??= []).push(await runGetPrompt(client, step, options));
      } else {
        throw new Error(`unknown step ${JSON.stringify(step)}`);
      }
    }
    if (transport instanceof StreamableHTTPClientTransport) {
      // End the session on the server too, as a well-behaved HTTP client does.
      await transport.terminateSession();
    }
  } finally {
    await client.close();
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function describe(e) {
  if (e instanceof McpError) return `McpError ${e.code}: ${e.message}`;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

async function main() {
  let script;
  try {
    script = JSON.parse(await readStdin());
    checkScript(script);
  } catch (e) {
    if (!(e instanceof SyntaxError || e instanceof ScriptError)) throw e;
    console.log(JSON.stringify({ fatal: `unusable script: ${e.message}` }));
    return 2;
  }
  const report = {
    protocolVersion: null,
    serverInfo: null,
    capabilities: null,
    tools: null,
    pings: 0,
    calls: [],
  };
  let status = 0;
  try {
    await runScript(script, report);
  } catch (e) {
    report.fatal = describe(e);
    status = 1;
  }
  console.log(JSON.stringify(report));
  return status;
}

process.exitCode = await main();
