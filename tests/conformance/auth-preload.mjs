// Loaded with `node --import` into the conformance suite's process so that every HTTP request it
// makes carries `Authorization: Bearer $CONFORMANCE_BEARER_TOKEN`: the suite has no option for
// headers, and Warden refuses requests without a token.
//
// The suite sends through Node's global fetch (the SDK client and its raw SSE checks) and through
// undici's `request` (the DNS-rebinding check). Both use the process-wide undici dispatcher, so
// installing one dispatcher that adds the header covers every path. The suite's own copy of
// undici is loaded, from the package directory this file sits in.
import { createRequire } from 'node:module';

const token = process.env.CONFORMANCE_BEARER_TOKEN;

if (token) {
  const require = createRequire(import.meta.url);
  const { Agent, setGlobalDispatcher } = require('undici');
  const authorization = `Bearer ${token}`;

  /** The request's headers with `authorization` added, unless it already has one. */
  function authorize(headers) {
    // undici accepts a flat [name, value, ...] array, a plain object, or an iterable of pairs.
    const pairs = [];
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2) pairs.push([headers[i], headers[i + 1]]);
    } else if (headers && typeof headers[Symbol.iterator] === 'function') {
      for (const [name, value] of headers) pairs.push([name, value]);
    } else if (headers) {
      pairs.push(...Object.entries(headers));
    }
    if (!pairs.some(([name]) => String(name).toLowerCase() === 'authorization')) {
      pairs.push(['authorization', authorization]);
    }
    return pairs.flat();
  }

  setGlobalDispatcher(
    new Agent().compose((dispatch) => (options, handler) =>
      dispatch({ ...options, headers: authorize(options.headers) }, handler)
    )
  );
}
