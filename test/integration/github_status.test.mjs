// GitHub commit statuses from the real binary to a GitHub API stand-in that checks requests the
// way GitHub does (github_standin.mjs).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { startGitHubAppStandIn, startGitHubStandIn } from './github_standin.mjs';
import { cleanup, fluxEvent, postEvent, request, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

// ---------------------------------------------------------------------------------------------

function githubConfig(stand, { target = {}, route = {} } = {}) {
  return {
    storage: { path: './data' },
    sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
    targets: [
      {
        name: 'github',
        type: 'github',
        // Any host but github.com is GitHub Enterprise: the API is at <address host>/api/v3.
        address: `${stand.url}/fluxcd/podinfo`,
        tokenFile: './github-token',
        timeout: '1s',
        // One worker: deliveries leave in the order they came, so the last one landing means
        // every earlier one was settled.
        concurrency: 1,
        retry: { initialInterval: '100ms', maxInterval: '500ms' },
        ...target,
      },
    ],
    // No route dedup: every event becomes a delivery, so skipped posts are the target's doing.
    routes: [{ name: 'statuses', source: 'flux', targets: ['github'], dedup: { mode: 'none' }, ...route }],
  };
}

// A Kustomization event for one commit, as kustomize-controller sends it.
function kustomizationEvent(name, sha, { severity = 'info', reason = severity === 'info' ? 'ReconciliationSucceeded' : 'HealthCheckFailed', metadata = {}, ...rest } = {}) {
  return fluxEvent({
    involvedObject: { kind: 'Kustomization', name, namespace: 'flux-system' },
    severity,
    reason,
    message: severity === 'info' ? `Applied revision: main@sha1:${sha}` : 'Health check failed after 5m0s',
    metadata: { revision: `main@sha1:${sha}`, ...(severity === 'info' ? { commit_status: 'update' } : {}), ...metadata },
    ...rest,
  });
}

async function post(relay, event) {
  const answer = await postEvent(relay, '/flux/events', event);
  assert.equal(answer.status, 202, `relay answered ${answer.status}: ${answer.text}`);
  return answer.json.id;
}

const GITHUB_TOKEN = `ghp_${randomBytes(18).toString('hex')}`;

describe('github target with a token', () => {
  let stand;
  let relay;

  before(async () => {
    stand = await startGitHubStandIn({ token: GITHUB_TOKEN });
    relay = await startRelay(githubConfig(stand), { files: { 'github-token': `${GITHUB_TOKEN}\n` } });
  });
  after(async () => {
    await relay?.stop();
    await stand?.close();
  });

  test('Kustomization info and error events become success and failure statuses on their commit', async () => {
    const name = `apps-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    await post(relay, kustomizationEvent(name, sha));
    await waitFor(() => stand.statusesFor(sha).length === 1, { what: 'the success status' });
    await post(relay, kustomizationEvent(name, sha, { severity: 'error' }));
    await waitFor(() => stand.statusesFor(sha).length === 2, { what: 'the failure status' });

    const [success, failure] = stand.statusesFor(sha);
    assert.deepEqual(
      { owner: success.owner, repo: success.repo, state: success.state, context: success.context, description: success.description },
      { owner: 'fluxcd', repo: 'podinfo', state: 'success', context: `kustomization/${name}`, description: 'reconciliation succeeded' },
    );
    assert.deepEqual(
      { state: failure.state, context: failure.context, description: failure.description },
      { state: 'failure', context: `kustomization/${name}`, description: 'health check failed' },
    );
    assert.deepEqual(stand.violations, []);
  });

  test('commit and originRevision metadata name the commit; an OCI digest alone is a dead letter, not a retry', async () => {
    const fromCommit = stand.newCommit();
    const fromOrigin = stand.newCommit();
    const digest = `sha256:${randomBytes(32).toString('hex')}`;
    const ociName = `oci-${uniqueSuffix()}`;
    // The digest-only event goes first: with one worker, the later statuses landing means it was settled.
    const ociEvent = await post(relay, kustomizationEvent(ociName, fromCommit, { metadata: { revision: `latest@${digest}` } }));
    await post(relay, kustomizationEvent(`commit-${uniqueSuffix()}`, fromCommit, { metadata: { revision: 'v1.2.3', commit: fromCommit.toUpperCase() } }));
    await post(relay, kustomizationEvent(`origin-${uniqueSuffix()}`, fromOrigin, { metadata: { revision: `latest@${digest}`, originRevision: `main@sha1:${fromOrigin}` } }));
    await waitFor(() => stand.statusesFor(fromCommit).length === 1 && stand.statusesFor(fromOrigin).length === 1, { what: 'statuses on commit and originRevision' });

    const letter = await waitFor(
      async () => {
        const answer = await request(`${relay.adminUrl}/api/v1/deadletters`);
        return answer.status === 200 && answer.json.find((l) => l.eventId === ociEvent);
      },
      { what: 'the OCI digest event as a dead letter' },
    );
    assert.equal(letter.attempts, 1, 'a permanent failure, not a retry loop');
    assert.match(letter.reason, /not a Git commit/);
    assert.match(letter.reason, /originRevision/);
    assert.equal(stand.statusRequests.filter((r) => r.sha === digest.slice(7)).length, 0);
    assert.deepEqual(stand.violations, []);
  });

  test('an identical status is posted once; a new state is posted again', async () => {
    const name = `twice-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    const event = kustomizationEvent(name, sha);
    await post(relay, event);
    await post(relay, event);
    // Same state and description, another message (Flux's dedup key would differ): still no post.
    await post(relay, { ...event, message: `${event.message} in 1.07s` });
    // Then a change, which must go out.
    await post(relay, kustomizationEvent(name, sha, { severity: 'error' }));
    await waitFor(() => stand.statusesFor(sha).some((s) => s.state === 'failure'), { what: 'the failure status' });
    assert.deepEqual(
      stand.requestsFor(sha).map((r) => JSON.parse(r.body).state),
      ['success', 'failure'],
      'three identical success statuses must become one POST',
    );
    assert.deepEqual(stand.violations, []);
  });

  test('nothing reaches GitHub for events Flux would not post', async () => {
    const before = stand.statusRequests.length;
    const sha = stand.newCommit();
    const ignored = [
      // info without commit_status=update or commit metadata: not a commit status
      kustomizationEvent(`plain-info-${uniqueSuffix()}`, sha, { metadata: { commit_status: '' } }),
      // Progressing, even as a commit status update or an error
      kustomizationEvent(`progressing-${uniqueSuffix()}`, sha, { reason: 'Progressing' }),
      kustomizationEvent(`progressing-error-${uniqueSuffix()}`, sha, { severity: 'error', reason: 'Progressing' }),
      // trace has no GitHub state
      kustomizationEvent(`trace-${uniqueSuffix()}`, sha, { severity: 'trace', metadata: { commit: sha } }),
      // no revision at all / one that names no commit
      { ...kustomizationEvent(`no-revision-${uniqueSuffix()}`, sha, { severity: 'error' }), metadata: {} },
      kustomizationEvent(`helm-version-${uniqueSuffix()}`, sha, { severity: 'error', metadata: { revision: '6.1.0' } }),
    ];
    for (const event of ignored) await post(relay, event);
    const valid = `valid-${uniqueSuffix()}`;
    await post(relay, kustomizationEvent(valid, sha, { severity: 'error' }));
    await waitFor(() => stand.statusesFor(sha).length === 1, { what: 'the valid status' });

    const seen = stand.statusRequests.slice(before);
    assert.equal(seen.length, 1, `only the valid event may reach GitHub, saw ${seen.map((r) => r.body).join(', ')}`);
    assert.equal(JSON.parse(seen[0].body).context, `kustomization/${valid}`);
    assert.deepEqual(stand.violations, []);
  });

  test('a rate limit pauses the whole target until x-ratelimit-reset, then both statuses land', async () => {
    const first = stand.newCommit();
    const second = stand.newCommit();
    let resetAt = 0;
    stand.answers.push({
      status: 403,
      body: { message: 'API rate limit exceeded for user ID 1.', documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api' },
      headers: () => {
        resetAt = Math.ceil(Date.now() / 1000) + 2;
        return { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-used': '5000', 'x-ratelimit-reset': String(resetAt), 'x-ratelimit-resource': 'core' };
      },
    });
    await post(relay, kustomizationEvent(`limited-${uniqueSuffix()}`, first));
    await waitFor(() => stand.requestsFor(first).some((r) => r.status === 403), { what: 'the rate-limited POST' });
    const limitedAt = Date.now();
    // Another object's status, sent while the target is paused, waits too.
    await post(relay, kustomizationEvent(`waiting-${uniqueSuffix()}`, second));
    await waitFor(() => stand.statusesFor(first).length === 1 && stand.statusesFor(second).length === 1, { what: 'both statuses after the reset' });

    // The 403 itself may carry the same millisecond as limitedAt: only the POSTs after it count.
    const afterLimit = stand.statusRequests.filter((r) => r.at >= limitedAt && r.status !== 403);
    assert.ok(afterLimit.length >= 2);
    for (const r of afterLimit) {
      // The relay's pause ends at the reset second; a little slack for clock granularity.
      assert.ok(r.at >= resetAt * 1000 - 100, `POST at ${r.at} came ${resetAt * 1000 - r.at} ms before the reset`);
    }
    assert.equal(stand.requestsFor(first).length, 2, 'one 403, then one POST after the reset');
    assert.equal(stand.requestsFor(second).length, 1, 'the paused target sent nothing before the reset');
    assert.deepEqual(stand.violations, []);
  });

  test('a secondary rate limit with Retry-After pauses for that long', async () => {
    const sha = stand.newCommit();
    stand.answers.push({
      status: 429,
      body: { message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.' },
      headers: { 'Retry-After': '1' },
    });
    await post(relay, kustomizationEvent(`secondary-${uniqueSuffix()}`, sha));
    await waitFor(() => stand.statusesFor(sha).length === 1, { what: 'the status after Retry-After' });
    const [limited, landed] = stand.requestsFor(sha);
    assert.equal(limited.status, 429);
    assert.equal(landed.status, 201);
    assert.ok(landed.at - limited.at >= 900, `retried after ${landed.at - limited.at} ms, Retry-After said 1 s`);
  });

  test('5xx and answers slower than the timeout are retried until the status lands', async () => {
    const sha = stand.newCommit();
    stand.answers.push({ status: 502, body: { message: 'Server Error' } });
    // Longer than the target's 1s timeout: the relay gives up on it and tries again.
    stand.answers.push({ status: 500, body: { message: 'too late' }, delayMs: 2500 });
    await post(relay, kustomizationEvent(`flaky-${uniqueSuffix()}`, sha, { severity: 'error' }));
    await waitFor(() => stand.statusesFor(sha).length === 1, { what: 'the status after 5xx and a timeout' });
    assert.equal(stand.requestsFor(sha).length, 3);
    assert.equal(stand.statusesFor(sha)[0].state, 'failure');
    assert.deepEqual(stand.violations, []);
    assert.ok(!relay.log().includes(GITHUB_TOKEN), 'the token shows in the relay log');
  });
});

describe('github target as a GitHub App', () => {
  const APP_ID = 1234;
  const INSTALLATION_ID = 5678;
  let stand;
  let relay;

  before(async () => {
    let privateKey;
    ({ stand, privateKey } = await startGitHubAppStandIn({ appId: APP_ID, installationId: INSTALLATION_ID }));
    const config = githubConfig(stand, {
      target: {
        tokenFile: undefined,
        app: { appID: APP_ID, installationID: INSTALLATION_ID, privateKeyFile: './app.pem' },
        context: 'flux/{namespace}/{kind}/{name}',
      },
    });
    relay = await startRelay(config, { files: { 'app.pem': privateKey } });
  });
  after(async () => {
    await relay?.stop();
    await stand?.close();
  });

  test('the JWT is exchanged once for an installation token that later posts reuse', async () => {
    const first = stand.newCommit();
    const second = stand.newCommit();
    const name = `app-${uniqueSuffix()}`;
    await post(relay, kustomizationEvent(name, first));
    await post(relay, kustomizationEvent(name, second, { severity: 'error' }));
    await waitFor(() => stand.statusesFor(first).length === 1 && stand.statusesFor(second).length === 1, { what: 'both statuses' });
    assert.equal(stand.exchanges.length, 1);
    assert.equal(stand.statusesFor(first)[0].context, `flux/flux-system/kustomization/${name}`);
    assert.deepEqual(stand.violations, []);
    // The token never shows in the relay's log.
    for (const token of stand.tokens) assert.ok(!relay.log().includes(token), 'installation token in the log');
  });

  test('a rejected installation token is dropped and a new one exchanged', async () => {
    const exchangesBefore = stand.exchanges.length;
    stand.tokens.clear(); // GitHub revoked every installation token
    const sha = stand.newCommit();
    await post(relay, kustomizationEvent(`revoked-${uniqueSuffix()}`, sha));
    await waitFor(() => stand.statusesFor(sha).length === 1, { what: 'the status with a new token' });
    assert.deepEqual(stand.requestsFor(sha).map((r) => r.status), [401, 201]);
    assert.equal(stand.exchanges.length, exchangesBefore + 1);
    assert.deepEqual(stand.violations, []);
  });
});
