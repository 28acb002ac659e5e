// Hostile clients against the real binary on loopback: a thousand idle connections, slowloris
// clients, the connection cap, request smuggling and a corpus of broken requests over raw
// sockets, a rate-limited source, the admin token, and secrets kept out of every answer and log.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';

import { baseConfig, cleanup, fluxEvent, postEvent, relayIsSanitized, request, signFlux, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

// Short deadlines, so that the tests wait for the relay's own timeouts instead of sleeping.
const READ_TIMEOUT = '2s';
const IDLE_TIMEOUT = '3s';
const ADMIN_TOKEN = 'hostile-admin-token-7d1e0c';
const WANTED_IDLE_CONNECTIONS = 1000;

// The idle connections need a descriptor each here, and the relay one per connection too (it
// raises its own soft limit to the hard one). Sized to what this process may open.
function idleConnectionBudget() {
  const limits = fs.readFileSync('/proc/self/limits', 'utf8');
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  const soft = !match || match[1] === 'unlimited' ? Infinity : Number(match[1]);
  return Math.max(0, Math.min(WANTED_IDLE_CONNECTIONS, soft - 200));
}

// Resolves once `socket` is connected.
function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
}

// Opens a connection and records how it ends: `closedByServer` once the relay closed it
// (end of stream or reset), with whatever it sent before.
function openConnection(port) {
  const socket = net.connect({ host: '127.0.0.1', port });
  const state = { socket, received: [], closedByServer: false, closed: false, error: null };
  socket.on('data', (chunk) => state.received.push(chunk));
  socket.on('end', () => {
    state.closedByServer = true;
    socket.end();
  });
  socket.on('error', (error) => {
    state.error = error;
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE') state.closedByServer = true;
  });
  socket.on('close', () => {
    state.closed = true;
  });
  state.ready = connected(socket);
  return state;
}

// The HTTP responses in `buffer`, in order: [{status, headers, body, json}].
function parseResponses(buffer) {
  const responses = [];
  let rest = buffer;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0])?.[1]);
    const headers = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] || 0);
    const body = rest.subarray(end + 4, end + 4 + length).toString('utf8');
    let json = null;
    try {
      json = JSON.parse(body);
    } catch {
      // left null
    }
    responses.push({ status, headers, body, json });
    rest = rest.subarray(end + 4 + length);
  }
  return responses;
}

// Sends `chunks` on a new connection (then half-closes it when `halfClose`) and waits, a bounded
// time, for the relay to close it. Returns {responses, closedByServer}.
async function exchange(port, chunks, { halfClose = false, timeoutMs = 30_000 } = {}) {
  const connection = openConnection(port);
  await connection.ready;
  for (const chunk of chunks) {
    if (connection.closed) break;
    connection.socket.write(chunk);
  }
  if (halfClose) connection.socket.end();
  await waitFor(() => connection.closed, { timeoutMs, intervalMs: 20, what: 'the relay to close the connection' }).finally(() =>
    connection.socket.destroy(),
  );
  return { responses: parseResponses(Buffer.concat(connection.received)), closedByServer: connection.closedByServer };
}

// A signed POST as raw bytes; `headers` are added (or, given as null, left out).
function signedRequest(body, { key, path = '/flux/events', headers = {} }) {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const all = {
    Host: '127.0.0.1',
    'Content-Type': 'application/json',
    'X-Signature': signFlux(bytes, key),
    'Content-Length': String(bytes.length),
    Connection: 'close',
    ...headers,
  };
  const head = Object.entries(all)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\n${head}\r\n`), bytes]);
}

function assertSingleError(result, status, mentions, what) {
  assert.equal(result.responses.length, 1, `${what}: exactly one answer expected, got ${JSON.stringify(result.responses)}`);
  const [response] = result.responses;
  assert.equal(response.status, status, `${what}: expected ${status}, got ${response.status}: ${response.body}`);
  assert.equal(typeof response.json?.error, 'string', `${what}: a JSON error expected, got ${response.body}`);
  assert.match(response.json.error, mentions, `${what}: the error should name the problem`);
  assert.ok(result.closedByServer, `${what}: the relay closes the connection`);
}

function vmRssKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)[1]);
}

// Every field of a Flux Event with values of the wrong type, and what the error must name.
function wrongTypeCases() {
  const cases = [];
  const wrong = { number: 42, boolean: true, array: ['x'], object: { x: 'y' } };
  const stringFields = ['message', 'reason', 'reportingController', 'reportingInstance', 'severity', 'timestamp'];
  for (const field of stringFields) {
    for (const [kind, value] of Object.entries(wrong)) {
      cases.push({ name: `${field} as ${kind}`, event: { ...fluxEvent(), [field]: value }, mentions: new RegExp(`^${field} `) });
    }
  }
  const objectFields = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'];
  for (const field of objectFields) {
    for (const [kind, value] of Object.entries(wrong)) {
      const event = fluxEvent();
      event.involvedObject[field] = value;
      cases.push({ name: `involvedObject.${field} as ${kind}`, event, mentions: new RegExp(`^involvedObject\\.${field} `) });
    }
  }
  for (const [kind, value] of Object.entries({ string: 'Kustomization/apps', number: 1, array: [], boolean: false })) {
    cases.push({ name: `involvedObject as ${kind}`, event: { ...fluxEvent(), involvedObject: value }, mentions: /^involvedObject / });
    cases.push({ name: `metadata as ${kind}`, event: { ...fluxEvent(), metadata: value }, mentions: /^metadata / });
  }
  for (const [kind, value] of Object.entries(wrong)) {
    cases.push({ name: `a metadata value as ${kind}`, event: fluxEvent({ metadata: { revision: value } }), mentions: /^metadata\.revision / });
  }
  return cases;
}

// Requests that must each get one 4xx naming the problem, and a closed connection where the
// framing cannot be trusted.
function badInputCorpus(key) {
  const event = JSON.stringify(fluxEvent());
  const head = (lines) => Buffer.from(`${lines.join('\r\n')}\r\n\r\n`);
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
  const post = ['POST /flux/events HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: application/json', `X-Signature: ${signFlux(event, key)}`];
  const corpus = [
    // Request smuggling: framing two hops could read differently.
    { name: 'Content-Length and Transfer-Encoding', chunks: [head([...post, `Content-Length: ${event.length}`, 'Transfer-Encoding: chunked']), event, smuggled], status: 400, mentions: /Transfer-Encoding/ },
    { name: 'Transfer-Encoding and Content-Length', chunks: [head([...post, 'Transfer-Encoding: chunked', `Content-Length: ${event.length}`]), event, smuggled], status: 400, mentions: /Content-Length/ },
    { name: 'two different Content-Lengths', chunks: [head([...post, `Content-Length: ${event.length}`, `Content-Length: ${event.length + 1}`]), event, smuggled], status: 400, mentions: /Content-Length/ },
    { name: 'a Content-Length list', chunks: [head([...post, `Content-Length: ${event.length}, 5`]), event, smuggled], status: 400, mentions: /Content-Length/ },
    { name: 'a negative Content-Length', chunks: [head([...post, 'Content-Length: -1']), event], status: 400, mentions: /Content-Length/ },
    { name: 'Transfer-Encoding gzip', chunks: [head([...post, 'Transfer-Encoding: gzip']), event, smuggled], status: 400, mentions: /Transfer-Encoding/ },
    { name: 'Transfer-Encoding gzip, chunked', chunks: [head([...post, 'Transfer-Encoding: gzip, chunked']), `${event.length.toString(16)}\r\n${event}\r\n0\r\n\r\n`, smuggled], status: 400, mentions: /Transfer-Encoding/ },
    { name: 'Transfer-Encoding chunked, gzip', chunks: [head([...post, 'Transfer-Encoding: chunked, gzip']), event, smuggled], status: 400, mentions: /Transfer-Encoding/ },
    { name: 'Transfer-Encoding twice', chunks: [head([...post, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']), '0\r\n\r\n', smuggled], status: 400, mentions: /Transfer-Encoding/ },
    { name: 'Transfer-Encoding xchunked', chunks: [head([...post, 'Transfer-Encoding: xchunked']), event, smuggled], status: 400, mentions: /Transfer-Encoding/ },
    { name: 'Transfer-Encoding in HTTP/1.0', chunks: [head([post[0].replace('1.1', '1.0'), ...post.slice(1), 'Transfer-Encoding: chunked']), `${event.length.toString(16)}\r\n${event}\r\n0\r\n\r\n`, smuggled], status: 400, mentions: /HTTP\/1\.0/ },
    { name: 'a blank before the colon', chunks: [head([...post, 'Transfer-Encoding : chunked', `Content-Length: ${event.length}`]), event, smuggled], status: 400, mentions: /malformed HTTP request/ },
    { name: 'a bad chunk size', chunks: [head([...post, 'Transfer-Encoding: chunked']), 'zz\r\n{}\r\n0\r\n\r\n', smuggled], status: 400, mentions: /chunk/i },
    { name: 'bare LF line endings', chunks: [Buffer.from(`${post.join('\n')}\nContent-Length: ${event.length}\n\n${event}`)], status: 400, mentions: /malformed HTTP request/ },
    { name: 'a NUL in a header value', chunks: [head([...post, 'X-Anything: a\u0000b', `Content-Length: ${event.length}`]), event], status: 400, mentions: /malformed HTTP request/ },
    // Size limits.
    { name: 'a 20 KiB header', chunks: [head([...post, `X-Padding: ${'p'.repeat(20 * 1024)}`, `Content-Length: ${event.length}`]), event], status: 431, mentions: /headers are too large/ },
    { name: '2,000 headers', chunks: [head([...post, ...Array.from({ length: 2000 }, (_, i) => `X-H${i}: v`), `Content-Length: ${event.length}`]), event], status: 431, mentions: /headers are too large/ },
    { name: 'a 20 KiB request target', chunks: [head([`POST /flux/events?${'q'.repeat(20 * 1024)} HTTP/1.1`, ...post.slice(1), `Content-Length: ${event.length}`]), event], status: 431, mentions: /headers are too large/ },
    { name: 'a 10 MB string', chunks: [signedRequest(JSON.stringify(fluxEvent({ message: 'm'.repeat(10 * 1024 * 1024) })), { key })], status: 413, mentions: /larger than \d+ bytes/ },
    { name: 'a 10 MB chunked body', chunks: [head([...post, 'Transfer-Encoding: chunked']), ...Array.from({ length: 10 }, () => `100000\r\n${'c'.repeat(0x100000)}\r\n`), '0\r\n\r\n'], status: 413, mentions: /larger than \d+ bytes/ },
    // Truncated requests whose client closed its side: it may still read the answer.
    { name: 'truncated headers', chunks: [Buffer.from(`${post.join('\r\n')}\r\nContent-Le`)], halfClose: true, status: 400, mentions: /ended before it was complete/ },
    { name: 'a truncated body', chunks: [head([...post, `Content-Length: ${event.length}`]), event.slice(0, 40)], halfClose: true, status: 400, mentions: /ended before it was complete/ },
    { name: 'a truncated chunked body', chunks: [head([...post, 'Transfer-Encoding: chunked']), `${event.length.toString(16)}\r\n${event.slice(0, 10)}`], halfClose: true, status: 400, mentions: /ended before it was complete/ },
    // Bodies that are well framed but not an event.
    { name: 'invalid UTF-8', chunks: [signedRequest(Buffer.concat([Buffer.from('{"message":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]), { key })], status: 400, mentions: /UTF-8/ },
    { name: 'JSON nested 100,000 deep', chunks: [signedRequest(`${'['.repeat(100_000)}${']'.repeat(100_000)}`, { key })], status: 400, mentions: /nested deeper than \d+ levels/ },
    { name: 'objects nested 10,000 deep in metadata', chunks: [signedRequest(`{"metadata":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`, { key })], status: 400, mentions: /nested deeper than \d+ levels/ },
    { name: 'a 2 MB metadata key', chunks: [signedRequest(JSON.stringify(fluxEvent({ metadata: { ['k'.repeat(2 * 1024 * 1024)]: 5 } })), { key })], status: 400, mentions: /^metadata\.k+\.\.\. must be a string$/ },
    { name: 'not JSON', chunks: [signedRequest('{"involvedObject": {', { key })], status: 400, mentions: /not valid JSON/ },
  ];
  for (const item of wrongTypeCases()) {
    corpus.push({ name: `wrong type: ${item.name}`, chunks: [signedRequest(JSON.stringify(item.event), { key })], status: 400, mentions: item.mentions });
  }
  return corpus;
}

describe('hostile clients', () => {
  let am;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    const config = baseConfig({
      alertmanagerUrl: am.url,
      server: { maxConnections: WANTED_IDLE_CONNECTIONS + 100, readTimeout: READ_TIMEOUT, idleTimeout: IDLE_TIMEOUT, writeTimeout: '5s' },
    });
    config.admin = { tokenFile: './admin-token' };
    config.sources.push({ name: 'limited', type: 'flux', path: '/flux/limited', hmacKeyFile: './flux-hmac', rateLimit: { requestsPerSecond: 1, burst: 3 } });
    relay = await startRelay(config, { files: { 'admin-token': `${ADMIN_TOKEN}\n` } });
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('serves signed events next to a thousand idle connections and slowloris clients, then closes those', async (t) => {
    const port = Number(new URL(relay.url).port);
    const count = idleConnectionBudget();
    if (count < WANTED_IDLE_CONNECTIONS) t.diagnostic(`descriptor limit allows ${count} idle connections, not ${WANTED_IDLE_CONNECTIONS}`);
    const idle = Array.from({ length: count }, () => openConnection(port));
    await Promise.all(idle.map((connection) => connection.ready));
    // A few of them idle after a request, kept alive: idleTimeout applies between requests too.
    const keptAlive = idle.slice(0, 10);
    for (const connection of keptAlive) connection.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await waitFor(() => keptAlive.every((connection) => parseResponses(Buffer.concat(connection.received)).length === 1), {
      what: 'the kept-alive connections to be answered',
    });

    // One trickles its headers, one its body, a byte a second: each would take minutes.
    const headerBytes = Buffer.from(`POST /flux/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: ${'s'.repeat(120)}\r\n\r\n`);
    const body = JSON.stringify(fluxEvent());
    const bodyHead = Buffer.from(`POST /flux/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Signature: ${signFlux(body, relay.hmacKey)}\r\nContent-Length: ${body.length}\r\n\r\n`);
    const slowHeader = openConnection(port);
    const slowBody = openConnection(port);
    await Promise.all([slowHeader.ready, slowBody.ready]);
    slowBody.socket.write(bodyHead);
    const sent = { header: 0, body: 0 };
    const trickle = setInterval(() => {
      if (!slowHeader.closed && sent.header < headerBytes.length) slowHeader.socket.write(headerBytes.subarray(sent.header, ++sent.header));
      if (!slowBody.closed && sent.body < body.length) slowBody.socket.write(body.slice(sent.body, ++sent.body));
    }, 1000);

    try {
      const names = [];
      for (let i = 0; i < 10; i += 1) {
        const name = `under-siege-${i}-${uniqueSuffix()}`;
        names.push(name);
        const response = await postEvent(relay, '/flux/events', fluxEvent({ involvedObject: { name }, message: `siege ${name}` }));
        assert.equal(response.status, 202, response.text);
      }
      const stillOpen = idle.filter((connection) => !connection.closed).length;
      t.diagnostic(`${stillOpen} of ${count} idle connections were open when the last event was accepted`);
      await waitFor(async () => (await am.alerts({ alertname: 'FluxKustomizationHealthcheckfailed' })).filter((a) => names.includes(a.labels.name)).length === names.length, {
        what: 'the events under siege in Alertmanager',
      });

      // Closed by the relay's deadlines: the whole request must arrive within readTimeout, however
      // steadily it trickles, and an idle connection is dropped after idleTimeout.
      await waitFor(() => slowHeader.closed && slowBody.closed, { what: 'the relay to close the slowloris connections' });
      assert.ok(slowHeader.closedByServer && slowBody.closedByServer);
      assert.ok(sent.header < headerBytes.length, `the header was cut off after ${sent.header} of ${headerBytes.length} bytes`);
      assert.ok(sent.body < body.length, `the body was cut off after ${sent.body} of ${body.length} bytes`);
      await waitFor(() => idle.every((connection) => connection.closed), {
        what: `the relay to close ${count} idle connections`,
      });
      assert.equal(idle.filter((connection) => !connection.closedByServer).length, 0, 'every idle connection was closed by the relay');
      assert.equal(Buffer.concat(idle.slice(keptAlive.length).flatMap((connection) => connection.received)).length, 0, 'idle connections get no bytes');
      for (const connection of keptAlive) {
        const responses = parseResponses(Buffer.concat(connection.received));
        assert.deepEqual(responses.map((response) => response.status), [200], 'one answer, then closed when idle');
      }
    } finally {
      clearInterval(trickle);
      for (const connection of [...idle, slowHeader, slowBody]) connection.socket.destroy();
    }
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ involvedObject: { name: `after-siege-${uniqueSuffix()}` } }))).status, 202);
  });

  it('answers every bad request with a 4xx naming the problem, stays up, and its memory stays flat', async (t) => {
    const port = Number(new URL(relay.url).port);
    const corpus = badInputCorpus(relay.hmacKey);
    const runCorpus = async () => {
      for (const item of corpus) {
        assertSingleError(await exchange(port, item.chunks, { halfClose: item.halfClose }), item.status, item.mentions, item.name);
      }
    };
    // Two rounds first, so that allocator caches and the journal of recent events are full.
    await runCorpus();
    await runCorpus();
    const before = vmRssKiB(relay.process.pid);
    const rounds = 5;
    for (let round = 0; round < rounds; round += 1) await runCorpus();
    const afterRounds = vmRssKiB(relay.process.pid);
    t.diagnostic(`${corpus.length} bad requests × ${rounds}: VmRSS ${before} kB → ${afterRounds} kB`);
    // Generous: a leak of even a few bytes per request times the 10 MB bodies would show far above it.
    if (relayIsSanitized) {
      t.diagnostic('sanitizer build: its allocator quarantines freed memory, so the VmRSS bound is checked by the plain build only');
    } else {
      assert.ok(afterRounds - before < 48 * 1024, `VmRSS grew from ${before} kB to ${afterRounds} kB`);
    }

    assert.equal(relay.process.exitCode, null, 'the relay is still running');
    assert.equal((await request(`${relay.url}/healthz`)).status, 200);
    const name = `after-corpus-${uniqueSuffix()}`;
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ involvedObject: { name } }))).status, 202);
  });

  it('serves nothing on the ingest listener but its sources and health', async () => {
    for (const path of ['/', '/metrics', '/api/v1/events', '/api/v1/deadletters', '/flux/events/', '//flux/events', '/flux/events.json']) {
      const response = await request(`${relay.url}${path}`);
      assert.equal(response.status, 404, `${path}: ${response.text}`);
      assert.match(response.json?.error, /no source is configured/);
    }
    const replay = await request(`${relay.url}/api/v1/deadletters/1/replay`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(replay.status, 404);
    assert.equal((await request(`${relay.url}/readyz`)).status, 200);
  });

  it('requires the admin token for admin writes', async () => {
    const replay = (headers) => request(`${relay.adminUrl}/api/v1/deadletters/999999/replay`, { method: 'POST', headers });
    for (const headers of [{}, { Authorization: 'Bearer wrong' }, { Authorization: `Bearer ${ADMIN_TOKEN}x` }, { Authorization: ADMIN_TOKEN }, { Authorization: `Basic ${ADMIN_TOKEN}` }]) {
      const response = await replay(headers);
      assert.equal(response.status, 401, `${JSON.stringify(headers)}: ${response.text}`);
      assert.ok(!response.text.includes(ADMIN_TOKEN), 'the answer does not echo the token');
    }
    // Past the token check: there is no such dead letter.
    const authorized = await replay({ Authorization: `Bearer ${ADMIN_TOKEN}` });
    assert.equal(authorized.status, 404, authorized.text);
    assert.equal((await request(`${relay.adminUrl}/api/v1/deadletters`)).status, 200, 'reads need no token');
  });

  it('limits the request rate of a source with a 429, Retry-After and a counted reason', async () => {
    let accepted = 0;
    let refused = null;
    for (let attempt = 0; attempt < 50 && !refused; attempt += 1) {
      const response = await postEvent(relay, '/flux/limited', fluxEvent({ involvedObject: { name: `limited-${uniqueSuffix()}` } }));
      if (response.status === 429) refused = response;
      else {
        assert.equal(response.status, 202, response.text);
        accepted += 1;
      }
    }
    assert.ok(refused, 'a burst past the limit is refused');
    assert.ok(accepted >= 3, `the burst of 3 passed first (${accepted} accepted)`);
    assert.match(refused.json?.error, /rate limit of source limited exceeded \(1 requests per second, burst 3\); retry after \d+ s/);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1, `Retry-After: ${refused.headers.get('retry-after')}`);
    // Other sources are not limited by it.
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ involvedObject: { name: `unlimited-${uniqueSuffix()}` } }))).status, 202);
    const metrics = (await request(`${relay.adminUrl}/metrics`)).text;
    const counted = /^fluxrelay_events_rejected_total\{source="limited",reason="rate_limit"\} (\d+)/m.exec(metrics);
    assert.ok(counted && Number(counted[1]) >= 1, 'the refusal is counted');
  });

  it('keeps secrets out of logs, answers, the status page and the API', async () => {
    const canary = `Bearer canary-${uniqueSuffix()}`;
    const response = await postEvent(relay, '/flux/events', fluxEvent(), { key: 'not-the-key', headers: { Authorization: canary } });
    assert.equal(response.status, 401);
    assert.equal(response.json?.error, 'invalid X-Signature', 'a bad signature is refused without saying which part is wrong');
    const answers = await Promise.all(['/', '/metrics', '/api/v1/events?limit=500', '/api/v1/objects', '/api/v1/targets', '/api/v1/deadletters'].map((path) => request(`${relay.adminUrl}${path}`)));
    for (const secret of [relay.hmacKey, ADMIN_TOKEN, canary]) {
      for (const answer of answers) assert.ok(!answer.text.includes(secret), 'no secret in an admin answer');
      assert.ok(!relay.log().includes(secret), 'no secret in the log');
    }
  });
});

describe('connection cap', () => {
  let relay;
  const CAP = 4;

  before(async () => {
    // Deadlines far beyond the test's steps: the held connections stay until the test lets go.
    relay = await startRelay(baseConfig({ alertmanagerUrl: 'http://127.0.0.1:9', server: { maxConnections: CAP, idleTimeout: '5m', readTimeout: '5m' } }));
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('answers the connection past the cap with 503 and closes it, then serves again once connections drop', async () => {
    const port = Number(new URL(relay.url).port);
    const held = Array.from({ length: CAP }, () => openConnection(port));
    await Promise.all(held.map((connection) => connection.ready));
    try {
      // The listener accepts in order: the next connection is the one past the cap, however
      // long its accept takes. Several, to see that it never lets one in.
      for (let i = 0; i < 3; i += 1) {
        const result = await exchange(port, ['GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n']);
        assertSingleError(result, 503, /too many connections/, `connection ${CAP + 1}`);
        assert.equal(result.responses[0].headers['retry-after'], '1');
      }
      assert.ok(held.every((connection) => !connection.closed), 'the held connections are untouched');
    } finally {
      for (const connection of held) connection.socket.destroy();
    }
    await waitFor(async () => (await exchange(port, ['GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'])).responses[0]?.status === 200, {
      what: 'the relay to serve again once the held connections closed',
    });
  });
});
