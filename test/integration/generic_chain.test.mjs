// Chained relays: relay A's generic target (signed as Flux's generic-hmac Provider, through a real
// tinyproxy) posts to relay B's flux source, which routes to a real Alertmanager and, with a
// generic target of its own, to a webhook receiver that checks the signature. The event arrives at
// B unchanged, and leaves B as the exact bytes of Go's json.Marshal.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

import { cleanup, expectedFluxLabels, fluxEvent, freePort, postEvent, request, startAlertmanager, startRelay, startTinyproxy, uniqueSuffix, waitFor } from './harness.mjs';

const CHAIN_KEY = 'chain-hmac-key-a-to-b-0123456789abcdef';
const RECEIVER_KEY = 'webhook-receiver-key-fedcba9876543210';

// A JSON string as Go's encoding/json writes it: HTML-safe, and U+2028/U+2029 escaped.
function goString(text) {
  return JSON.stringify(text).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// json.Marshal of Flux's Event: the struct's field order, its omitempty tags, map keys sorted.
function goEventJson(event) {
  const object = event.involvedObject;
  const involved = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath']
    .filter((key) => object[key])
    .map((key) => `${goString(key)}:${goString(object[key])}`);
  const fields = [
    `"involvedObject":{${involved.join(',')}}`,
    `"severity":${goString(event.severity)}`,
    `"timestamp":${event.timestamp ? goString(event.timestamp) : 'null'}`,
    `"message":${goString(event.message)}`,
    `"reason":${goString(event.reason)}`,
  ];
  const keys = Object.keys(event.metadata || {}).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  if (keys.length > 0) fields.push(`"metadata":{${keys.map((key) => `${goString(key)}:${goString(event.metadata[key])}`).join(',')}}`);
  fields.push(`"reportingController":${goString(event.reportingController)}`);
  if (event.reportingInstance) fields.push(`"reportingInstance":${goString(event.reportingInstance)}`);
  return `{${fields.join(',')}}`;
}

// What a generic-hmac receiver does: keep each request, answer 401 to a bad signature.
async function startWebhookReceiver(key) {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const expected = Buffer.from(`sha256=${createHmac('sha256', key).update(body).digest('hex')}`);
      const given = Buffer.from(req.headers['x-signature'] || '');
      const valid = given.length === expected.length && timingSafeEqual(given, expected);
      received.push({ method: req.method, url: req.url, headers: req.headers, body, valid });
      res.writeHead(valid ? 200 : 401).end();
    });
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}`, received, close: () => new Promise((resolve) => server.close(resolve)) };
}

describe('relay A → generic target → relay B → Alertmanager and a webhook', () => {
  let am;
  let proxy;
  let receiver;
  let relayA;
  let relayB;

  before(async () => {
    am = await startAlertmanager();
    proxy = await startTinyproxy();
    receiver = await startWebhookReceiver(RECEIVER_KEY);
    const retry = { initialInterval: '100ms', maxInterval: '1s' };
    relayB = await startRelay(
      {
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [
          { name: 'alertmanager', type: 'alertmanager', address: `${am.url}/api/v2/alerts`, retry },
          { name: 'webhook', type: 'generic', address: `${receiver.url}/webhook/flux`, hmacKeyFile: './receiver-key', retry },
        ],
        routes: [{ name: 'all', source: 'flux', targets: ['alertmanager', 'webhook'] }],
      },
      { hmacKey: CHAIN_KEY, files: { 'receiver-key': `${RECEIVER_KEY}\n` } },
    );
    relayA = await startRelay(
      {
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [
          {
            name: 'relay-b',
            type: 'generic',
            address: `${relayB.url}/flux/events`,
            hmacKeyFile: './chain-key',
            proxy: proxy.url,
            headers: { 'X-Relay': 'a' },
            timeout: '5s',
            retry,
          },
          // The same relay with a key it does not know: B refuses it, so A keeps a dead letter.
          { name: 'relay-b-wrong-key', type: 'generic', address: `${relayB.url}/flux/events`, hmacKeyFile: './wrong-key', retry },
        ],
        routes: [{ name: 'to-b', source: 'flux', eventMetadata: { cluster: 'home' }, targets: ['relay-b', 'relay-b-wrong-key'] }],
      },
      { files: { 'chain-key': `${CHAIN_KEY}\n`, 'wrong-key': 'not-the-chain-key' } },
    );
  });

  after(async () => {
    try {
      if (relayA) await relayA.stop();
      if (relayB) await relayB.stop();
    } finally {
      if (receiver) await receiver.close();
      await cleanup();
    }
  });

  it('delivers the event to B unchanged but for the route metadata, and B sends it on as Go writes it', async () => {
    const name = `chained-${uniqueSuffix()}`;
    const event = fluxEvent({
      involvedObject: { name },
      message: 'Health check failed: <Deployment/default/podinfo> & "more" — café 🚀 \u2028 next line',
      metadata: { summary: 'prod & staging' },
    });
    // Posted as Flux posts it: Go's bytes.
    const posted = goEventJson(event);
    const answer = await postEvent(relayA, '/flux/events', posted);
    assert.equal(answer.status, 202, answer.text);

    // What B received from A, as B forwards it: A's route added its metadata, nothing else changed.
    const expected = { ...event, metadata: { ...event.metadata, cluster: 'home' } };
    const forwarded = await waitFor(() => receiver.received.find((r) => r.body.includes(name)), { what: 'B forwarding the event to the webhook' });
    assert.equal(forwarded.valid, true, 'B signs as generic-hmac with its target key');
    assert.equal(forwarded.method, 'POST');
    assert.equal(forwarded.url, '/webhook/flux');
    assert.equal(forwarded.headers['content-type'], 'application/json');
    assert.equal(forwarded.headers['gotk-component'], event.reportingController);
    assert.deepEqual(JSON.parse(forwarded.body.toString('utf8')), expected);
    assert.equal(forwarded.body.toString('utf8'), goEventJson(expected));
    assert.equal(receiver.received.length, 1);

    // The same event, field by field, as B's Alertmanager target made it into an alert.
    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ name });
      return alerts.length > 0 && alerts;
    }, { what: `an alert for ${name} from relay B` });
    assert.deepEqual(alert.labels, expectedFluxLabels(expected));
    assert.deepEqual(alert.annotations, { message: event.message, summary: 'prod & staging' });

    // A's request went through the proxy, as a forwarded http request.
    assert.match(proxy.log(), new RegExp(`POST ${relayB.url}/flux/events`));
  });

  it('a wrong key is refused by B and dead-lettered by A; B journals the refusal', async () => {
    const letters = await waitFor(async () => {
      const list = (await request(`${relayA.adminUrl}/api/v1/deadletters`)).json;
      return list.length > 0 && list;
    }, { what: "A's dead letter for the wrong key" });
    assert.equal(letters.length, 1);
    assert.equal(letters[0].target, 'relay-b-wrong-key');
    assert.match(letters[0].reason, /HTTP 401/);

    const journal = await waitFor(async () => {
      const entries = (await request(`${relayB.adminUrl}/api/v1/events`)).json;
      return entries.some((entry) => entry.status === 'rejected') && entries;
    }, { what: "B's journal entry for the refused request" });
    assert.equal(journal.filter((entry) => entry.status === 'accepted').length, 1);
    const refused = journal.filter((entry) => entry.status === 'rejected');
    assert.equal(refused.length, 1);
    assert.equal(refused[0].httpStatus, 401);
  });
});
