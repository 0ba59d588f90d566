#!/usr/bin/env node
// Turns the conformance suite's output into stable tables, and compares two runs.
//
//   node results.mjs reduce RAW_DIR > results.tsv
//       One line per check: scenario, check id, status; sorted. RAW_DIR holds the suite's
//       `server-<scenario>-<timestamp>/checks.json` folders. The suite's traffic log (requests,
//       responses, SSE events) is left out: it varies from run to run.
//
//   node results.mjs compare DIRECT.tsv VIA.tsv EXPECTED.tsv
//       Prints every check whose status differs (`-` when a run has no such check) as
//       scenario, check, direct, via-warden; then how that set differs from EXPECTED (same
//       columns; `#` lines are comments). Exit 0 when it is exactly the expected set, 1 if not.
import fs from 'node:fs';
import path from 'node:path';

/** Checks that record traffic rather than judge it. */
const TRAFFIC = new Set(['outgoing-request', 'incoming-response', 'incoming-sse-event', 'stream-closed']);

function reduce(dir) {
  const rows = new Set();
  for (const entry of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, entry, 'checks.json');
    if (!fs.existsSync(file)) continue;
    const scenario = entry.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
    for (const check of JSON.parse(fs.readFileSync(file, 'utf8'))) {
      if (!TRAFFIC.has(check.id)) rows.add(`${scenario}\t${check.id}\t${check.status}`);
    }
  }
  if (rows.size === 0) throw new Error(`no checks.json under ${dir}`);
  return [...rows].sort();
}

/** Non-comment, non-empty lines of a TSV file, each split into its columns. */
function table(file) {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'))
    .map((line) => line.split('\t'));
}

function statuses(file) {
  const map = new Map();
  for (const [scenario, check, status] of table(file)) map.set(`${scenario}\t${check}`, status);
  return map;
}

function compare(directFile, viaFile, expectedFile) {
  const direct = statuses(directFile);
  const via = statuses(viaFile);
  const keys = [...new Set([...direct.keys(), ...via.keys()])].sort();
  const differences = keys
    .filter((k) => direct.get(k) !== via.get(k))
    .map((k) => `${k}\t${direct.get(k) ?? '-'}\t${via.get(k) ?? '-'}`);
  const expected = table(expectedFile).map((cols) => cols.join('\t'));

  console.log(`differences between the direct run and the run through Warden: ${differences.length}`);
  for (const d of differences) console.log(`  ${d}`);
  const unexpected = differences.filter((d) => !expected.includes(d));
  const vanished = expected.filter((e) => !differences.includes(e));
  for (const d of unexpected) console.log(`NEW (not in ${path.basename(expectedFile)}): ${d}`);
  for (const e of vanished) console.log(`GONE (listed in ${path.basename(expectedFile)}, not seen): ${e}`);
  if (unexpected.length === 0 && vanished.length === 0) {
    console.log(`as expected: every difference is listed in ${path.basename(expectedFile)}, and only those`);
    return 0;
  }
  return 1;
}

const [command, ...args] = process.argv.slice(2);
try {
  if (command === 'reduce' && args.length === 1) {
    console.log(reduce(args[0]).join('\n'));
  } else if (command === 'compare' && args.length === 3) {
    process.exitCode = compare(...args);
  } else {
    console.error('usage: results.mjs reduce RAW_DIR | compare DIRECT.tsv VIA.tsv EXPECTED.tsv');
    process.exitCode = 2;
  }
} catch (err) {
  console.error(`results.mjs: ${err.message}`);
  process.exitCode = 2;
}
