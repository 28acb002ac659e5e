// GitHub push webhooks → Flux reconcile: real GitHub payloads, signed as GitHub signs them, through
// the real binary to a Flux Receiver stand-in and a Kubernetes API stand-in.
import { randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { sign } from '@octokit/webhooks-methods';

import { RFC3339_NANO_UTC, startFluxReceiver, startKubernetesApi } from './flux_fakes.mjs';
import { cleanup, request, startRelay, waitFor } from './harness.mjs';

const require = createRequire(import.meta.url);
// [{name, examples: [payload, ...]}, ...]: payloads GitHub sent, collected by the Octokit project.
const webhookExamples = require('@octokit/webhooks-examples');

const WEBHOOK_SECRET = 'github-webhook-secret-for-tests';
const RECEIVER_TOKEN = 'flux-receiver-token-for-tests';
const RECEIVER = { name: 'github-webhook', namespace: 'flux-system' };
const GITHUB_TIMEOUT_MS = 10_000; // GitHub gives up on a delivery after 10 s
// A retried delivery may wait behind the circuit breaker after an outage: a wide bound.
const RECOVERY_TIMEOUT_MS = 90_000;

function examplesOf(name) {
  const entry = webhookExamples.find((candidate) => candidate.name === name);
  assert.ok(entry, `@octokit/webhooks-examples has ${name} payloads`);
  return entry.examples;
}

const pushes = examplesOf('push');
const branchPush = pushes.find((p) => p.ref.startsWith('refs/heads/') && !p.deleted);
const tagPush = pushes.find((p) => p.ref.startsWith('refs/tags/') && !p.deleted);
const tagDeletion = pushes.find((p) => p.ref.startsWith('refs/tags/') && p.deleted);
// GitHub's payload for deleting a branch has the tag deletion's shape, with a branch ref.
const branchDeletion = { ...tagDeletion, ref: 'refs/heads/feature-to-delete' };
const ping = examplesOf('ping')[0];
const issueOpened = examplesOf('issues')[0];

// The branch push of the examples, on another branch (each route below listens to one).
function pushTo(branch, extra = {}) {
  return { ...branchPush, ref: `refs/heads/${branch}`, ...extra };
}

// POSTs a webhook delivery as GitHub does: JSON (or form) body, X-Hub-Signature-256 over the raw
// body, event and delivery headers. Returns the harness's {status, json, text} plus the delivery
// id, the JSON sent (`sent`), and how long the answer took.
async function postGitHub(relay, payload, { event = 'push', delivery = randomUUID(), secret = WEBHOOK_SECRET, form = false, headers = {} } = {}) {
  const json = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const body = form ? new URLSearchParams({ payload: json }).toString() : json;
  const requestHeaders = {
    'Content-Type': form ? 'application/x-www-form-urlencoded' : 'application/json',
    'User-Agent': 'GitHub-Hookshot/044aadd',
    'X-GitHub-Event': event,
    'X-GitHub-Delivery': delivery,
    'X-GitHub-Hook-ID': '292430182',
    'X-Hub-Signature-256': await sign(secret, body),
    ...headers,
  };
  for (const [name, value] of Object.entries(requestHeaders)) {
    if (value === undefined) delete requestHeaders[name];
  }
  const started = Date.now();
  const response = await request(`${relay.url}/github/webhook`, { method: 'POST', headers: requestHeaders, body });
  return { ...response, delivery, sent: json, ms: Date.now() - started };
}

describe('GitHub push → Flux reconcile', () => {
  let receiver;
  let kube;
  let relay;

  const gitRepositoryPath = '/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system';
  const configMapPath = '/api/v1/namespaces/flux-system/configmaps/cluster-settings';

  before(async () => {
    receiver = await startFluxReceiver({ token: RECEIVER_TOKEN, ...RECEIVER, events: ['push'] });
    kube = await startKubernetesApi({
      token: 'kube-token-1',
      objects: [
        { apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', plural: 'gitrepositories', namespace: 'flux-system', name: 'flux-system' },
        { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespace: 'flux-system', name: 'cluster-settings' },
      ],
    });
    const retry = { initialInterval: '100ms', maxInterval: '500ms' };
    relay = await startRelay(
      {
        storage: { path: './data' },
        sources: [{ name: 'github', type: 'github', path: '/github/webhook', secretFile: './github-secret', events: ['ping', 'push'] }],
        targets: [
          { name: 'receiver', type: 'flux-receiver', address: receiver.url, receiver: RECEIVER, tokenFile: './receiver-token', timeout: '5s', retry },
          {
            name: 'cluster',
            type: 'kubernetes',
            address: kube.url,
            tokenFile: './kube-token',
            timeout: '5s',
            retry,
            resources: [
              { apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', name: 'flux-system', namespace: 'flux-system' },
              { apiVersion: 'v1', kind: 'ConfigMap', name: 'cluster-settings', namespace: 'flux-system' },
            ],
          },
        ],
        routes: [
          // The examples push to master; tags and deletions are not listed, so they trigger nothing.
          { name: 'reconcile-on-push', source: 'github', events: ['push'], branches: ['master', 'main'], targets: ['receiver'] },
          { name: 'reconcile-burst', source: 'github', events: ['push'], branches: ['burst'], debounce: '5s', targets: ['receiver'] },
          { name: 'reconcile-cluster', source: 'github', events: ['push'], branches: ['k8s'], targets: ['cluster'] },
        ],
      },
      { files: { 'github-secret': `${WEBHOOK_SECRET}\n`, 'receiver-token': RECEIVER_TOKEN, 'kube-token': 'kube-token-1\n' } },
    );
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await receiver?.stop();
      await kube?.stop();
      await cleanup();
    }
  });

  // A valid push on the plain route, waited for: everything posted before it that could have
  // triggered a reconcile would have been accepted and routed first.
  async function sentinelPush() {
    const push = await postGitHub(relay, branchPush);
    assert.equal(push.status, 202, push.text);
    await waitFor(() => receiver.reconcilesFor([push.delivery]).length === 1, { what: `reconcile for sentinel ${push.delivery}` });
  }

  it('answers a ping with pong and triggers nothing', async () => {
    const response = await postGitHub(relay, ping, { event: 'ping' });
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(response.json, { status: 'pong' });
    await sentinelPush();
    assert.equal(receiver.reconcilesFor([response.delivery]).length, 0);
  });

  it('turns a valid push into exactly one reconcile, body byte for byte, re-signed for the Receiver', async () => {
    const push = await postGitHub(relay, branchPush);
    assert.equal(push.status, 202, push.text);
    assert.equal(push.json.status, 'accepted');
    assert.ok(push.ms < GITHUB_TIMEOUT_MS, `answered in ${push.ms} ms`);
    const [reconcile] = await waitFor(() => {
      const found = receiver.reconcilesFor([push.delivery]);
      return found.length > 0 && found;
    }, { what: `reconcile for ${push.delivery}` });
    // The stand-in accepted the signature made with the Receiver's token; the rest as GitHub sent it.
    assert.equal(reconcile.body, push.sent);
    assert.equal(reconcile.event, 'push');
    assert.equal(reconcile.headers['content-type'], 'application/json');
    assert.match(reconcile.headers['x-hub-signature-256'], /^sha256=[0-9a-f]{64}$/);
    assert.equal(reconcile.headers.authorization, undefined, 'the receiver token is never sent');

    // A form-encoded delivery: the Receiver gets the JSON inside it.
    const form = await postGitHub(relay, branchPush, { form: true });
    assert.equal(form.status, 202, form.text);
    const [fromForm] = await waitFor(() => {
      const found = receiver.reconcilesFor([form.delivery]);
      return found.length > 0 && found;
    }, { what: `reconcile for form delivery ${form.delivery}` });
    assert.equal(fromForm.body, form.sent);

    await sentinelPush();
    assert.equal(receiver.reconcilesFor([push.delivery]).length, 1);
    assert.equal(receiver.reconcilesFor([form.delivery]).length, 1);
  });

  it('refuses bad signatures with 401 and triggers nothing', async () => {
    const wrongSecret = await postGitHub(relay, branchPush, { secret: 'not-the-secret' });
    const missing = await postGitHub(relay, branchPush, { headers: { 'X-Hub-Signature-256': undefined } });
    const sha1Only = await postGitHub(relay, branchPush, {
      headers: { 'X-Hub-Signature-256': undefined, 'X-Hub-Signature': 'sha1=0000000000000000000000000000000000000000' },
    });
    for (const response of [wrongSecret, missing, sha1Only]) {
      assert.equal(response.status, 401, response.text);
      // One answer for every signature problem.
      assert.equal(response.json.error, 'missing or invalid X-Hub-Signature-256');
    }
    await sentinelPush();
    assert.equal(receiver.reconcilesFor([wrongSecret.delivery, missing.delivery, sha1Only.delivery]).length, 0);
  });

  it('answers a redelivery with 200 duplicate and triggers nothing twice', async () => {
    const first = await postGitHub(relay, branchPush);
    assert.equal(first.status, 202, first.text);
    await waitFor(() => receiver.reconcilesFor([first.delivery]).length === 1, { what: `reconcile for ${first.delivery}` });
    // GitHub's "Redeliver" sends the same delivery id again.
    const again = await postGitHub(relay, branchPush, { delivery: first.delivery });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.json, { status: 'duplicate' });
    await sentinelPush();
    assert.equal(receiver.reconcilesFor([first.delivery]).length, 1);
  });

  it('ignores tag pushes and branch deletions by default, and refuses events the source does not list', async () => {
    const ignored = [];
    for (const payload of [tagPush, branchDeletion, tagDeletion]) {
      const response = await postGitHub(relay, payload);
      // Stored (GitHub sees success), routed nowhere.
      assert.equal(response.status, 202, response.text);
      ignored.push(response.delivery);
    }
    const issues = await postGitHub(relay, issueOpened, { event: 'issues' });
    assert.equal(issues.status, 400, issues.text);
    assert.match(issues.json.error, /"issues"/);

    const valid = await postGitHub(relay, branchPush);
    assert.equal(valid.status, 202, valid.text);
    await waitFor(() => receiver.reconcilesFor([valid.delivery]).length === 1, { what: `reconcile for ${valid.delivery}` });
    assert.deepEqual(receiver.reconcilesFor([...ignored, issues.delivery]), []);
  });

  it('coalesces a burst of pushes within the debounce into one reconcile of the latest', async () => {
    const started = Date.now();
    const ids = [];
    for (let i = 0; i < 10; i += 1) {
      const push = await postGitHub(relay, pushTo('burst', { after: `${String(i).padStart(2, '0')}${branchPush.after.slice(2)}` }));
      assert.equal(push.status, 202, push.text);
      ids.push(push.delivery);
    }
    const postedIn = Date.now() - started;
    assert.ok(postedIn < 4_000, `the burst was posted within the 5 s debounce (${postedIn} ms)`);

    const [reconcile] = await waitFor(() => {
      const found = receiver.reconcilesFor(ids);
      return found.length > 0 && found;
    }, { what: 'the debounced reconcile' });
    assert.equal(reconcile.deliveryId, ids[ids.length - 1], 'the latest push of the burst is the one forwarded');
    assert.ok(reconcile.at - started >= 4_500, `forwarded after the debounce (${reconcile.at - started} ms)`);

    await sentinelPush();
    assert.equal(receiver.reconcilesFor(ids).length, 1);
  });

  it('retries while the Receiver is not ready or down, and triggers once it is back', async () => {
    receiver.setReady(false);
    const push = await postGitHub(relay, branchPush);
    assert.equal(push.status, 202, push.text);
    // notification-controller answers 503 for a Receiver that is not ready: a reason to retry.
    await waitFor(() => receiver.answers.filter((a) => a.deliveryId === push.delivery && a.status === 503).length >= 2, {
      what: 'the relay retrying after 503 answers',
    });

    // Then the receiver server goes away altogether.
    await receiver.stop();
    const refusedBefore = relay.logLines().filter((line) => /refused/i.test(JSON.stringify(line))).length;
    await waitFor(() => relay.logLines().filter((line) => /refused/i.test(JSON.stringify(line))).length > refusedBefore, {
      what: 'a delivery attempt refused while the Receiver is down',
    });
    assert.equal(receiver.reconcilesFor([push.delivery]).length, 0);

    receiver.setReady(true);
    await receiver.start(); // same port
    await waitFor(() => receiver.reconcilesFor([push.delivery]).length === 1, {
      timeoutMs: RECOVERY_TIMEOUT_MS,
      what: `reconcile for ${push.delivery} once the Receiver is back`,
    });
    await sentinelPush();
    assert.equal(receiver.reconcilesFor([push.delivery]).length, 1);
  });

  it('patches reconcile.fluxcd.io/requestedAt on each listed resource of a kubernetes target', async () => {
    const push = await postGitHub(relay, pushTo('k8s'));
    assert.equal(push.status, 202, push.text);
    const patchesOf = (p) => kube.patches.filter((patch) => patch.path === p);
    await waitFor(() => patchesOf(gitRepositoryPath).length === 1 && patchesOf(configMapPath).length === 1, {
      what: 'both resources patched',
    });
    for (const patch of kube.patches) {
      assert.equal(patch.contentType, 'application/merge-patch+json');
      assert.deepEqual(Object.keys(JSON.parse(patch.body)), ['metadata']);
      assert.match(patch.requestedAt, RFC3339_NANO_UTC);
      assert.ok(Math.abs(Date.parse(patch.requestedAt) - Date.now()) < 60_000, `requestedAt ${patch.requestedAt} is now`);
    }
    const annotation = (p) => kube.object(p).metadata.annotations['reconcile.fluxcd.io/requestedAt'];
    const firstRequest = annotation(gitRepositoryPath);
    assert.equal(annotation(configMapPath), firstRequest);
    // Nothing went to the Receiver: this route's target is the cluster.
    assert.equal(receiver.reconcilesFor([push.delivery]).length, 0);

    // The service-account token rotates: the API server takes only the new one, which the relay
    // reads from its token file after the old one is refused.
    kube.setToken('kube-token-2');
    await fsp.writeFile(path.join(relay.dir, 'kube-token'), 'kube-token-2');
    const afterRotation = await postGitHub(relay, pushTo('k8s'));
    assert.equal(afterRotation.status, 202, afterRotation.text);
    await waitFor(() => patchesOf(gitRepositoryPath).length === 2 && patchesOf(configMapPath).length === 2, {
      what: 'both resources patched again with the rotated token',
    });
    assert.ok(kube.answers.some((a) => a.status === 401), 'the old token was refused once');
    assert.notEqual(annotation(gitRepositoryPath), firstRequest);
  });
});
