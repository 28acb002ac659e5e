// Hostile and broken requests get the right 4xx with a JSON error, and leave the relay serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { baseConfig, cleanup, fluxEvent, postEvent, request, signFlux, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

const MAX_BODY_BYTES = 4096;

function assertJsonError(response, status, mentions) {
  assert.equal(response.status, status, `expected ${status}, got ${response.status}: ${response.text}`);
  assert.ok(response.json && typeof response.json === 'object', `JSON body expected, got: ${response.text}`);
  assert.equal(typeof response.json.error, 'string', `"error" string expected in ${response.text}`);
  assert.notEqual(response.json.error.trim(), '', 'error message is not empty');
  if (mentions) {
    assert.ok(response.json.error.includes(mentions), `error should name "${mentions}": ${response.json.error}`);
  }
}

describe('bad input', () => {
  let am;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, server: { maxBodyBytes: MAX_BODY_BYTES } }));
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('rejects a body that is not JSON with 400', async () => {
    assertJsonError(await postEvent(relay, '/flux/events', '{"involvedObject": {"kind": "Kustomization",'), 400);
    assertJsonError(await postEvent(relay, '/flux/events', 'hello'), 400);
    assertJsonError(await postEvent(relay, '/flux/events', ''), 400);
  });

  it('rejects JSON that is not an event object with 400', async () => {
    assertJsonError(await postEvent(relay, '/flux/events', JSON.stringify([fluxEvent()])), 400);
    assertJsonError(await postEvent(relay, '/flux/events', '"just a string"'), 400);
    assertJsonError(await postEvent(relay, '/flux/events', 'null'), 400);
  });

  it('names the field that has the wrong type', async () => {
    assertJsonError(await postEvent(relay, '/flux/events', { ...fluxEvent(), severity: 5 }), 400, 'severity');
    assertJsonError(await postEvent(relay, '/flux/events', { ...fluxEvent(), message: { text: 'nested' } }), 400, 'message');
    assertJsonError(await postEvent(relay, '/flux/events', { ...fluxEvent(), metadata: { revision: 42 } }), 400, 'metadata');
    assertJsonError(await postEvent(relay, '/flux/events', { ...fluxEvent(), involvedObject: 'Kustomization/apps' }), 400, 'involvedObject');
    const event = fluxEvent();
    event.involvedObject.kind = ['Kustomization'];
    assertJsonError(await postEvent(relay, '/flux/events', event), 400, 'kind');
  });

  it('names a missing involvedObject', async () => {
    const { involvedObject, ...event } = fluxEvent();
    assert.ok(involvedObject);
    assertJsonError(await postEvent(relay, '/flux/events', event), 400, 'involvedObject');
  });

  it('rejects missing and wrong signatures with 401', async () => {
    const event = fluxEvent({ involvedObject: { name: `unsigned-${uniqueSuffix()}` } });
    assertJsonError(await postEvent(relay, '/flux/events', event, { key: null }), 401);
    assertJsonError(await postEvent(relay, '/flux/events', event, { key: 'not-the-key' }), 401);
    const body = JSON.stringify(event);
    // Signed over a different serialisation of the same event: the raw bytes are what count.
    assertJsonError(
      await postEvent(relay, '/flux/events', body, { key: null, headers: { 'X-Signature': signFlux(JSON.stringify(event, null, 2), relay.hmacKey) } }),
      401,
    );
    assertJsonError(await postEvent(relay, '/flux/events', body, { key: null, headers: { 'X-Signature': 'sha256=' } }), 401);
    assertJsonError(await postEvent(relay, '/flux/events', body, { key: null, headers: { 'X-Signature': 'md5=0123' } }), 401);
    assertJsonError(await postEvent(relay, '/flux/events', body, { key: null, headers: { 'X-Signature': 'garbage' } }), 401);
    // None of them was accepted.
    const alerts = await am.alerts({ name: event.involvedObject.name });
    assert.equal(alerts.length, 0);
  });

  it('accepts sha384 and sha512 signatures too', async () => {
    for (const alg of ['sha384', 'sha512']) {
      const event = fluxEvent({ involvedObject: { name: `signed-${alg}-${uniqueSuffix()}` } });
      const response = await postEvent(relay, '/flux/events', event, { alg });
      assert.equal(response.status, 202, `${alg}: ${response.text}`);
    }
  });

  it('rejects a body over maxBodyBytes with 413', async () => {
    const event = fluxEvent({ message: 'x'.repeat(MAX_BODY_BYTES * 2) });
    assertJsonError(await postEvent(relay, '/flux/events', event), 413);
  });

  // The sender must see the 413 even while it is still writing: answering and closing at once
  // would reset the connection under it. Bodies far larger than socket buffers, a few times
  // over, because a reset is a race the server only sometimes loses.
  it('answers 413 to a sender still writing a large body', async () => {
    const body = JSON.stringify(fluxEvent({ message: 'x'.repeat(2 * 1024 * 1024) }));
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const response = await postEvent(relay, '/flux/events', body).catch((error) => {
        throw new Error(`attempt ${attempt}: connection failed instead of a 413: ${error.cause?.code || error.message}`);
      });
      assertJsonError(response, 413);
    }
  });

  it('answers 413 to a chunked body over maxBodyBytes', async () => {
    const body = Buffer.from(JSON.stringify(fluxEvent({ message: 'y'.repeat(64 * 1024) })));
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const stream = new ReadableStream({
        start(controller) {
          for (let offset = 0; offset < body.length; offset += 1024) controller.enqueue(body.subarray(offset, offset + 1024));
          controller.close();
        },
      });
      const response = await request(`${relay.url}/flux/events`, {
        method: 'POST',
        body: stream,
        duplex: 'half',
        headers: { 'Content-Type': 'application/json', 'X-Signature': signFlux(body, relay.hmacKey) },
      }).catch((error) => {
        throw new Error(`attempt ${attempt}: connection failed instead of a 413: ${error.cause?.code || error.message}`);
      });
      assertJsonError(response, 413);
    }
  });

  it('answers 405 to another method on the event path', async () => {
    assertJsonError(await request(`${relay.url}/flux/events`), 405);
    assertJsonError(await postEvent(relay, '/flux/events', fluxEvent(), { method: 'PUT' }), 405);
  });

  it('answers 404 to an unknown path', async () => {
    assertJsonError(await postEvent(relay, '/flux/nope', fluxEvent()), 404);
    assertJsonError(await request(`${relay.url}/nope`), 404);
  });

  it('answers 415 to an unsupported Content-Type', async () => {
    assertJsonError(await postEvent(relay, '/flux/events', fluxEvent(), { contentType: 'text/plain' }), 415);
  });

  it('keeps serving: healthz, and a valid event still reaches Alertmanager', async () => {
    assert.equal((await request(`${relay.url}/healthz`)).status, 200);
    assert.equal((await request(`${relay.adminUrl}/healthz`)).status, 200);
    assert.equal((await request(`${relay.adminUrl}/readyz`)).status, 200);

    const name = `after-bad-input-${uniqueSuffix()}`;
    const event = fluxEvent({ involvedObject: { name }, reason: 'ReconciliationFailed', message: `still working: ${name}` });
    const response = await postEvent(relay, '/flux/events', event);
    assert.equal(response.status, 202, response.text);
    assert.equal(response.json?.status, 'accepted');
    await waitFor(async () => (await am.alerts({ name })).length === 1, { what: `alert for ${name}` });
  });
});
