#!/usr/bin/env node
// Warden's MCP conformance target: a Streamable HTTP server that offers every tool, resource,
// prompt and behaviour the MCP conformance suite's server scenarios ask for, written from the
// suite's checks. The suite's own example server is not published to any package registry,
// so this one is ours.
//
//   node server.mjs [--port N]      (N = 0, the default, picks a free port)
//
// Prints `conformance-server: serving MCP at http://localhost:PORT/mcp` on stdout once it
// accepts connections. Stops on SIGTERM or SIGINT.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { deflateSync } from 'node:zlib';

import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  isInitializeRequest,
} from '@modelcontextprotocol/sdk/types.js';

const MAX_BODY_BYTES = 4 * 1024 * 1024;
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

// === Media: a 1x1 red PNG and a short WAV tone, built here rather than pasted in ===

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

function redPixelPng() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0); // width
  ihdr.writeUInt32BE(1, 4); // height
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  // One scanline: filter byte 0, then R G B.
  const pixels = deflateSync(Buffer.from([0, 0xff, 0, 0]));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', pixels),
    pngChunk('IEND', Buffer.alloc(0)),
  ]).toString('base64');
}

function toneWav() {
  const rate = 8000;
  const samples = 400; // 50 ms of a 440 Hz tone, 16-bit mono
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    data.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8, 'ascii');
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]).toString('base64');
}

const PNG = redPixelPng();
const WAV = toneWav();

const text = (t) => ({ type: 'text', text: t });
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const noArguments = { type: 'object', properties: {} };

// === Tools ===

/** Each tool: its listing entry and what a call does (`(args, extra, session) => result`). */
const TOOLS = [
  {
    name: 'test_simple_text',
    description: 'Returns one text block',
    inputSchema: noArguments,
    call: () => ({ content: [text('This is a simple text response for testing.')] }),
  },
  {
    name: 'test_image_content',
    description: 'Returns a 1x1 red PNG',
    inputSchema: noArguments,
    call: () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }),
  },
  {
    name: 'test_audio_content',
    description: 'Returns a short WAV tone',
    inputSchema: noArguments,
    call: () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }),
  },
  {
    name: 'test_embedded_resource',
    description: 'Returns an embedded text resource',
    inputSchema: noArguments,
    call: () => ({
      content: [
        {
          type: 'resource',
          resource: {
            uri: 'test://embedded-resource',
            mimeType: 'text/plain',
            text: 'This is an embedded resource content.',
          },
        },
      ],
    }),
  },
  {
    name: 'test_multiple_content_types',
    description: 'Returns text, an image and an embedded resource',
    inputSchema: noArguments,
    call: () => ({
      content: [
        text('Multiple content types test:'),
        { type: 'image', data: PNG, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    }),
  },
  {
    name: 'test_tool_with_logging',
    description: 'Sends three info log messages while it runs',
    inputSchema: noArguments,
    call: async (_args, extra, session) => {
      const steps = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
      for (const [i, message] of steps.entries()) {
        if (i > 0) await pause(50);
        await session.log(extra, 'info', message);
      }
      return { content: [text('Logged 3 messages while running.')] };
    },
  },
  {
    name: 'test_error_handling',
    description: 'Always fails with a tool error',
    inputSchema: noArguments,
    call: () => ({
      isError: true,
      content: [text('This tool intentionally returns an error for testing')],
    }),
  },
  {
    name: 'test_tool_with_progress',
    description: 'Reports progress 0, 50 and 100 of 100 when given a progress token',
    inputSchema: noArguments,
    call: async (_args, extra) => {
      const token = extra._meta?.progressToken;
      for (const [i, progress] of [0, 50, 100].entries()) {
        if (i > 0) await pause(50);
        if (token !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress, total: 100 },
          });
        }
      }
      return { content: [text('Progress reported: 0, 50, 100 of 100.')] };
    },
  },
  {
    name: 'test_sampling',
    description: "Asks the client's model to answer a prompt",
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'The prompt to send' } },
      required: ['prompt'],
    },
    call: async (args, extra, session) => {
      if (!session.server.getClientCapabilities()?.sampling) {
        return { isError: true, content: [text('The client does not offer sampling.')] };
      }
      const result = await extra.sendRequest(
        {
          method: 'sampling/createMessage',
          params: {
            messages: [{ role: 'user', content: text(String(args.prompt ?? '')) }],
            maxTokens: 100,
          },
        },
        CreateMessageResultSchema
      );
      const answer = result.content?.type === 'text' ? result.content.text : JSON.stringify(result.content);
      return { content: [text(`LLM response: ${answer}`)] };
    },
  },
  {
    name: 'test_elicitation',
    description: 'Asks the user for a username and an email address',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string', description: 'What to ask the user' } },
      required: ['message'],
    },
    call: (args, extra, session) =>
      elicit(extra, session, String(args.message ?? ''), {
        type: 'object',
        properties: {
          username: { type: 'string', description: "User's response" },
          email: { type: 'string', description: "User's email address" },
        },
        required: ['username', 'email'],
      }).then((r) => ({ content: [text(`User response: ${describe(r)}`)] })),
  },
  {
    name: 'test_elicitation_sep1034_defaults',
    description: 'Elicits one field of each primitive type, each with a default',
    inputSchema: noArguments,
    call: (_args, extra, session) =>
      elicit(extra, session, 'Confirm or change these details', {
        type: 'object',
        properties: {
          name: { type: 'string', title: 'Name', default: 'John Doe' },
          age: { type: 'integer', title: 'Age', default: 30 },
          score: { type: 'number', title: 'Score', default: 95.5 },
          status: {
            type: 'string',
            title: 'Status',
            enum: ['active', 'inactive', 'pending'],
            default: 'active',
          },
          verified: { type: 'boolean', title: 'Verified', default: true },
        },
      }).then((r) => ({ content: [text(`Elicitation completed: ${describe(r)}`)] })),
  },
  {
    name: 'test_elicitation_sep1330_enums',
    description: 'Elicits one field of each enum form: plain, titled, legacy, multi, titled multi',
    inputSchema: noArguments,
    call: (_args, extra, session) =>
      elicit(extra, session, 'Pick some options', {
        type: 'object',
        properties: {
          untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          titledSingle: {
            type: 'string',
            oneOf: [
              { const: 'value1', title: 'First Option' },
              { const: 'value2', title: 'Second Option' },
              { const: 'value3', title: 'Third Option' },
            ],
          },
          legacyEnum: {
            type: 'string',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array',
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array',
            items: {
              anyOf: [
                { const: 'value1', title: 'First Choice' },
                { const: 'value2', title: 'Second Choice' },
                { const: 'value3', title: 'Third Choice' },
              ],
            },
          },
        },
      }).then((r) => ({ content: [text(`Elicitation completed: ${describe(r)}`)] })),
  },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Has an input schema that uses JSON Schema 2020-12 keywords',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: {
          type: 'object',
          properties: { street: { type: 'string' }, city: { type: 'string' } },
        },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
    call: (args) => ({ content: [text(`Received: ${JSON.stringify(args)}`)] }),
  },
  {
    name: 'test_reconnection',
    description: 'Closes its event stream mid-call when the client can resume, then answers',
    inputSchema: noArguments,
    call: async (_args, extra) => {
      // Offered by the SDK only when the stream is resumable (an event store, and a client
      // that announced 2025-11-25 or later); the answer then waits in the event store.
      if (extra.closeSSEStream) {
        await pause(50);
        extra.closeSSEStream();
      }
      await pause(100);
      return { content: [text('Reconnection test completed.')] };
    },
  },
];

async function elicit(extra, session, message, requestedSchema) {
  if (!session.server.getClientCapabilities()?.elicitation) {
    throw new McpError(ErrorCode.InvalidRequest, 'The client does not offer elicitation.');
  }
  return extra.sendRequest(
    { method: 'elicitation/create', params: { message, requestedSchema } },
    ElicitResultSchema
  );
}

function describe(result) {
  return `action=${result.action}, content=${JSON.stringify(result.content ?? {})}`;
}

// === Resources ===

const RESOURCES = [
  {
    uri: 'test://static-text',
    name: 'static-text',
    description: 'A fixed text resource',
    mimeType: 'text/plain',
    read: (uri) => ({ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }),
  },
  {
    uri: 'test://static-binary',
    name: 'static-binary',
    description: 'A fixed binary resource: a 1x1 red PNG',
    mimeType: 'image/png',
    read: (uri) => ({ uri, mimeType: 'image/png', blob: PNG }),
  },
  {
    uri: 'test://watched-resource',
    name: 'watched-resource',
    description: 'A resource clients may subscribe to',
    mimeType: 'text/plain',
    read: (uri) => ({ uri, mimeType: 'text/plain', text: 'The watched resource has not changed.' }),
  },
];

const TEMPLATE = {
  uriTemplate: 'test://template/{id}/data',
  name: 'template-data',
  description: 'Data for any id',
  mimeType: 'application/json',
};
const TEMPLATE_PATTERN = /^test:\/\/template\/([^/]+)\/data$/;

function readResource(uri) {
  const fixed = RESOURCES.find((r) => r.uri === uri);
  if (fixed) return fixed.read(uri);
  const match = TEMPLATE_PATTERN.exec(uri);
  if (match) {
    const id = decodeURIComponent(match[1]);
    return {
      uri,
      mimeType: 'application/json',
      text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
    };
  }
  // -32002: the code the MCP specification gives for an unknown resource.
  throw new McpError(-32002, `Resource not found: ${uri}`, { uri });
}

// === Prompts ===

function requireArgument(args, name) {
  const value = args?.[name];
  if (typeof value !== 'string') {
    throw new McpError(ErrorCode.InvalidParams, `Missing required argument: ${name}`);
  }
  return value;
}

const PROMPTS = [
  {
    name: 'test_simple_prompt',
    description: 'A prompt without arguments',
    get: () => ({ messages: [{ role: 'user', content: text('This is a simple prompt for testing.') }] }),
  },
  {
    name: 'test_prompt_with_arguments',
    description: 'A prompt with two arguments',
    arguments: [
      { name: 'arg1', description: 'First test argument', required: true },
      { name: 'arg2', description: 'Second test argument', required: true },
    ],
    get: (args) => {
      const arg1 = requireArgument(args, 'arg1');
      const arg2 = requireArgument(args, 'arg2');
      return {
        messages: [
          { role: 'user', content: text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`) },
        ],
      };
    },
  },
  {
    name: 'test_prompt_with_embedded_resource',
    description: 'A prompt that embeds the resource it is given',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
    get: (args) => ({
      messages: [
        {
          role: 'user',
          content: {
            type: 'resource',
            resource: {
              uri: requireArgument(args, 'resourceUri'),
              mimeType: 'text/plain',
              text: 'Embedded resource content for testing.',
            },
          },
        },
        { role: 'user', content: text('Please process the embedded resource above.') },
      ],
    }),
  },
  {
    name: 'test_prompt_with_image',
    description: 'A prompt that carries an image',
    get: () => ({
      messages: [
        { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
        { role: 'user', content: text('Please analyze the image above.') },
      ],
    }),
  },
];

/** Suggestions for completable arguments, keyed by `ref` then argument name. */
const COMPLETIONS = {
  'ref/prompt:test_prompt_with_arguments': {
    arg1: ['paris', 'park', 'party', 'test', 'testing'],
    arg2: ['alpha', 'beta', 'gamma'],
  },
  [`ref/resource:${TEMPLATE.uriTemplate}`]: { id: ['1', '123', '42'] },
};

function complete({ ref, argument }) {
  const key = ref.type === 'ref/prompt' ? `ref/prompt:${ref.name}` : `ref/resource:${ref.uri}`;
  const options = COMPLETIONS[key]?.[argument.name] ?? [];
  const values = options.filter((v) => v.startsWith(argument.value ?? ''));
  return { completion: { values, total: values.length, hasMore: false } };
}

// === One MCP session ===

const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** In-memory event store: lets a client resume a stream with Last-Event-ID. */
class MemoryEventStore {
  constructor() {
    this.events = new Map(); // event id -> { streamId, message }, in insertion order
    this.next = 0;
  }

  async storeEvent(streamId, message) {
    const id = `${streamId}:${++this.next}`;
    this.events.set(id, { streamId, message });
    return id;
  }

  async getStreamIdForEventId(eventId) {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(lastEventId, { send }) {
    const last = this.events.get(lastEventId);
    if (!last) throw new Error(`unknown event id ${lastEventId}`);
    let after = false;
    for (const [id, event] of this.events) {
      if (id === lastEventId) {
        after = true;
      } else if (after && event.streamId === last.streamId && Object.keys(event.message).length > 0) {
        await send(id, event.message);
      }
    }
    return last.streamId;
  }
}

class Session {
  constructor(onClose) {
    this.logLevel = undefined; // all messages until the client sets a level
    this.subscriptions = new Set();
    this.server = new Server(
      { name: 'warden-conformance-target', version: '1.0.0' },
      {
        capabilities: {
          tools: {},
          resources: { subscribe: true },
          prompts: {},
          logging: {},
          completions: {},
        },
      }
    );
    this.transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new MemoryEventStore(),
      retryInterval: 500,
      onsessioninitialized: (id) => sessions.set(id, this),
    });
    this.transport.onclose = onClose;
    this.handle();
  }

  async log(extra, level, message) {
    if (this.logLevel && LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(this.logLevel)) return;
    // Sent as part of the request, so it travels on the request's own stream.
    await extra.sendNotification({
      method: 'notifications/message',
      params: { level, logger: 'conformance-target', data: message },
    });
  }

  handle() {
    const s = this.server;
    s.setRequestHandler(SetLevelRequestSchema, (req) => {
      this.logLevel = req.params.level;
      return {};
    });
    s.setRequestHandler(ListToolsRequestSchema, () => ({
      tools: TOOLS.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })),
    }));
    s.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
      const tool = TOOLS.find((t) => t.name === req.params.name);
      if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
      return tool.call(req.params.arguments ?? {}, extra, this);
    });
    s.setRequestHandler(ListResourcesRequestSchema, () => ({
      resources: RESOURCES.map(({ uri, name, description, mimeType }) => ({ uri, name, description, mimeType })),
    }));
    s.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({ resourceTemplates: [TEMPLATE] }));
    s.setRequestHandler(ReadResourceRequestSchema, (req) => ({ contents: [readResource(req.params.uri)] }));
    s.setRequestHandler(SubscribeRequestSchema, (req) => {
      readResource(req.params.uri); // unknown resources cannot be watched
      this.subscriptions.add(req.params.uri);
      return {};
    });
    s.setRequestHandler(UnsubscribeRequestSchema, (req) => {
      this.subscriptions.delete(req.params.uri);
      return {};
    });
    s.setRequestHandler(ListPromptsRequestSchema, () => ({
      prompts: PROMPTS.map(({ name, description, arguments: args }) => ({ name, description, arguments: args })),
    }));
    s.setRequestHandler(GetPromptRequestSchema, (req) => {
      const prompt = PROMPTS.find((p) => p.name === req.params.name);
      if (!prompt) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
      return prompt.get(req.params.arguments ?? {});
    });
    s.setRequestHandler(CompleteRequestSchema, (req) => complete(req.params));
  }
}

// === HTTP ===

const sessions = new Map();

function hostAllowed(req) {
  // DNS rebinding: only loopback names, in Host and (when a browser sends one) Origin.
  const name = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
  if (!LOOPBACK_NAMES.has(name)) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return LOOPBACK_NAMES.has(new URL(origin).hostname.toLowerCase());
  } catch {
    return false;
  }
}

function reject(res, status, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function serve(req, res) {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (path !== '/mcp') return reject(res, 404, -32000, 'Not found: the MCP endpoint is /mcp');
  if (!hostAllowed(req)) return reject(res, 403, -32000, 'Forbidden: Host or Origin is not loopback');

  const id = req.headers['mcp-session-id'];
  if (req.method !== 'POST') {
    const session = typeof id === 'string' ? sessions.get(id) : undefined;
    if (!session) return reject(res, id ? 404 : 400, -32000, id ? 'Session not found' : 'Missing session id');
    return session.transport.handleRequest(req, res);
  }

  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    return reject(res, 400, -32700, 'Parse error');
  }
  if (typeof id === 'string') {
    const session = sessions.get(id);
    if (!session) return reject(res, 404, -32001, 'Session not found');
    return session.transport.handleRequest(req, res, body);
  }
  if (!isInitializeRequest(body)) return reject(res, 400, -32000, 'Missing session id');
  const session = new Session(() => {
    if (session.transport.sessionId) sessions.delete(session.transport.sessionId);
  });
  await session.server.connect(session.transport);
  return session.transport.handleRequest(req, res, body);
}

function parsePort(argv) {
  const i = argv.indexOf('--port');
  const port = i >= 0 ? Number(argv[i + 1]) : 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('usage: server.mjs [--port N]');
    process.exit(2);
  }
  return port;
}

const httpServer = http.createServer((req, res) => {
  serve(req, res).catch((err) => {
    console.error(`conformance-server: ${err?.stack ?? err}`);
    if (!res.headersSent) reject(res, 500, ErrorCode.InternalError, 'Internal error');
    else res.end();
  });
});

httpServer.listen(parsePort(process.argv.slice(2)), '127.0.0.1', () => {
  console.log(`conformance-server: serving MCP at http://localhost:${httpServer.address().port}/mcp`);
});

async function shutdown() {
  for (const session of sessions.values()) await session.transport.close().catch(() => {});
  httpServer.close();
  httpServer.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
