// GitHub Deployments from the real binary to the GitHub API stand-in (github_standin.mjs), which
// checks each request against GitHub's OpenAPI description and keeps deployments and statuses as
// GitHub does: a rollout's events become one Deployment per revision with its statuses in order.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { startGitHubAppStandIn, startGitHubStandIn } from './github_standin.mjs';
import { cleanup, fluxEvent, metricSample, postEvent, request, startRedis, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

const GITHUB_TOKEN = `ghp_${randomBytes(18).toString('hex')}`;

function deploymentConfig(stand) {
  return {
    storage: { path: './data' },
    sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
    targets: [
      {
        name: 'deploys',
        type: 'github-deployment',
        address: `${stand.url}/fluxcd/podinfo`,
        environment: 'home/{name}',
        environmentUrl: 'https://{name}.home.example',
        tokenFile: './github-token',
        timeout: '1s',
        retry: { initialInterval: '100ms', maxInterval: '500ms' },
      },
    ],
    routes: [{ name: 'rollouts', source: 'flux', targets: ['deploys'], dedup: { mode: 'none' } }],
  };
}

// The events kustomize-controller sends while it rolls a revision out.
function rolloutEvent(name, sha, reason) {
  const error = reason === 'HealthCheckFailed';
  return fluxEvent({
    involvedObject: { kind: 'Kustomization', name, namespace: 'flux-system' },
    severity: error ? 'error' : 'info',
    reason,
    message: {
      Progressing: 'Deployment/default/podinfo configured',
      HealthCheckFailed: 'health check failed after 30s: timeout waiting for: [Deployment/default/podinfo status: InProgress]',
      ReconciliationSucceeded: `Applied revision: main@sha1:${sha}`,
    }[reason],
    metadata: { revision: `main@sha1:${sha}` },
  });
}

async function post(relay, event) {
  const answer = await postEvent(relay, '/flux/events', event);
  assert.equal(answer.status, 202, `relay answered ${answer.status}: ${answer.text}`);
  return answer.json.id;
}

const states = (deployment) => deployment.statuses.map((s) => s.state);

// The deliveries a relay settled as delivered to the target.
async function deliveredCount(relay) {
  const text = (await request(`${relay.adminUrl}/metrics`)).text;
  return metricSample(text, 'fluxrelay_deliveries_total', { target: 'deploys', outcome: 'delivered' }) ?? 0;
}

describe('github-deployment target', () => {
  let stand;
  let relay;

  before(async () => {
    stand = await startGitHubStandIn({ token: GITHUB_TOKEN });
    relay = await startRelay(deploymentConfig(stand), { files: { 'github-token': `${GITHUB_TOKEN}\n` } });
  });
  after(async () => {
    await relay?.stop();
    await stand?.close();
  });

  test('a rollout: one Deployment per revision, statuses in order, the last good one inactive after the fix', async () => {
    const name = `apps-${uniqueSuffix()}`;
    const [good, broken, fixed] = [stand.newCommit(), stand.newCommit(), stand.newCommit()];
    const steps = [
      [good, 'Progressing'],
      [good, 'ReconciliationSucceeded'],
      [broken, 'Progressing'],
      [broken, 'HealthCheckFailed'],
      [fixed, 'Progressing'],
      [fixed, 'ReconciliationSucceeded'],
    ];
    for (const [sha, reason] of steps) await post(relay, rolloutEvent(name, sha, reason));
    await waitFor(() => stand.deploymentsFor(fixed)[0]?.statuses.some((s) => s.state === 'success'), { what: 'the fixed revision live' });

    for (const sha of [good, broken, fixed]) assert.equal(stand.deploymentsFor(sha).length, 1, `one Deployment of ${sha}`);
    const [first] = stand.deploymentsFor(good);
    const [second] = stand.deploymentsFor(broken);
    const [third] = stand.deploymentsFor(fixed);
    assert.deepEqual(states(first), ['in_progress', 'success', 'inactive']);
    assert.deepEqual(states(second), ['in_progress', 'failure']);
    assert.deepEqual(states(third), ['in_progress', 'success']);
    assert.equal(first.environment, `home/${name}`);
    assert.deepEqual(first.payload, { kind: 'Kustomization', namespace: 'flux-system', name });
    assert.equal(first.production, false);
    assert.equal(second.statuses[1].description, 'HealthCheckFailed: health check failed after 30s: timeout waiting for: [Deployment/default/podinfo status: InProgress]'.slice(0, 140));
    assert.equal(third.statuses[1].environment_url, `https://${name}.home.example`);
    assert.deepEqual(stand.violations, []);
  });

  test('an identical status is posted once; a later success of the same revision is posted again', async () => {
    const name = `again-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    await post(relay, rolloutEvent(name, sha, 'ReconciliationSucceeded'));
    await post(relay, rolloutEvent(name, sha, 'ReconciliationSucceeded'));
    await post(relay, rolloutEvent(name, sha, 'HealthCheckFailed'));
    await post(relay, rolloutEvent(name, sha, 'ReconciliationSucceeded'));
    await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 3, { what: 'three statuses' });
    assert.equal(stand.deploymentsFor(sha).length, 1);
    assert.deepEqual(states(stand.deploymentsFor(sha)[0]), ['success', 'failure', 'success']);
    assert.deepEqual(stand.violations, []);
  });

  test('a create whose answer was lost and a 5xx on a status are retried without a second Deployment', async () => {
    const name = `flaky-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    // GitHub creates the Deployment, but the relay sees a 502; then the first status post fails too.
    stand.deploymentAnswers.push({ status: 502, body: { message: 'Bad Gateway' }, applied: true });
    stand.deploymentAnswers.push({ status: 500, body: { message: 'Server Error' } });
    await post(relay, rolloutEvent(name, sha, 'Progressing'));
    await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 1, { what: 'the in_progress status' });
    assert.equal(stand.deploymentsFor(sha).length, 1);
    assert.deepEqual(states(stand.deploymentsFor(sha)[0]), ['in_progress']);
    assert.deepEqual(stand.violations, []);
  });

  test('a rate limit pauses the target until x-ratelimit-reset, then the rollout goes on', async () => {
    const name = `limited-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    let resetAt = 0;
    stand.deploymentAnswers.push({
      status: 403,
      body: { message: 'API rate limit exceeded for user ID 1.', documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api' },
      headers: () => {
        resetAt = Math.ceil(Date.now() / 1000) + 1;
        return { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-used': '5000', 'x-ratelimit-reset': String(resetAt), 'x-ratelimit-resource': 'core' };
      },
    });
    await post(relay, rolloutEvent(name, sha, 'Progressing'));
    await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 1, { what: 'the in_progress status after the reset' });
    const limited = stand.deploymentRequests.find((r) => r.status === 403);
    const created = stand.deploymentRequests.filter((r) => r.at > limited.at && r.method === 'POST' && r.status === 201);
    assert.ok(created.length >= 1);
    for (const r of created) assert.ok(r.at >= resetAt * 1000 - 100, `POST ${r.at - resetAt * 1000} ms before the reset`);
    assert.equal(stand.deploymentsFor(sha).length, 1);
    assert.deepEqual(stand.violations, []);
  });

  test('after a restart the stored Deployment gets the next status', async () => {
    const name = `restart-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    await post(relay, rolloutEvent(name, sha, 'Progressing'));
    await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 1, { what: 'the in_progress status' });
    await relay.stop();
    await relay.restart();
    const lists = stand.deploymentRequests.filter((r) => r.method === 'GET').length;
    await post(relay, rolloutEvent(name, sha, 'ReconciliationSucceeded'));
    await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 2, { what: 'the success status' });
    assert.equal(stand.deploymentsFor(sha).length, 1);
    assert.deepEqual(states(stand.deploymentsFor(sha)[0]), ['in_progress', 'success']);
    assert.equal(stand.deploymentRequests.filter((r) => r.method === 'GET').length, lists, 'the id came from the spool, not a list');
    assert.deepEqual(stand.violations, []);
  });

  test('events of other kinds are not routed to the target; GitHub refusals are dead letters with the reason', async () => {
    const before = stand.deploymentRequests.length;
    const helm = fluxEvent({
      involvedObject: { kind: 'HelmRelease', name: `podinfo-${uniqueSuffix()}`, namespace: 'default' },
      severity: 'info',
      reason: 'UpgradeSucceeded',
      message: 'Helm upgrade succeeded',
      metadata: { revision: '6.1.0' },
    });
    const answer = await postEvent(relay, '/flux/events', helm);
    assert.equal(answer.status, 202);

    // A commit GitHub does not know: 422 "No ref found", permanent.
    const unknown = randomBytes(20).toString('hex');
    const id = await post(relay, rolloutEvent(`unknown-${uniqueSuffix()}`, unknown, 'Progressing'));
    const letter = await waitFor(
      async () => {
        const letters = await request(`${relay.adminUrl}/api/v1/deadletters`);
        return letters.status === 200 && letters.json.find((l) => l.eventId === id);
      },
      { what: 'the unknown ref as a dead letter' },
    );
    assert.equal(letter.attempts, 1);
    assert.match(letter.reason, /HTTP 422/);
    assert.match(letter.reason, /No ref found/);
    const seen = stand.deploymentRequests.slice(before);
    assert.deepEqual(seen.map((r) => `${r.method} ${r.path} ${r.status}`), ['GET deployments 200', 'POST deployments 422']);
    stand.violations.length = 0; // the unknown ref was the point
    assert.ok(!relay.log().includes(GITHUB_TOKEN), 'the token shows in the relay log');
  });
});

describe('github-deployment target as a GitHub App', () => {
  const APP_ID = 4321;
  const INSTALLATION_ID = 8765;
  let stand;
  let relay;

  before(async () => {
    let privateKey;
    ({ stand, privateKey } = await startGitHubAppStandIn({ appId: APP_ID, installationId: INSTALLATION_ID }));
    const config = deploymentConfig(stand);
    const { tokenFile: _tokenFile, ...target } = config.targets[0];
    config.targets[0] = { ...target, app: { appID: APP_ID, installationID: INSTALLATION_ID, privateKeyFile: './app.pem' } };
    relay = await startRelay(config, { files: { 'app.pem': privateKey } });
  });
  after(async () => {
    await relay?.stop();
    await stand?.close();
  });

  test('one installation token serves the list, the create and the statuses', async () => {
    const name = `app-${uniqueSuffix()}`;
    const sha = stand.newCommit();
    await post(relay, rolloutEvent(name, sha, 'Progressing'));
    await post(relay, rolloutEvent(name, sha, 'ReconciliationSucceeded'));
    await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 2, { what: 'both statuses' });
    assert.equal(stand.exchanges.length, 1);
    assert.equal(stand.deploymentsFor(sha).length, 1);
    assert.deepEqual(states(stand.deploymentsFor(sha)[0]), ['in_progress', 'success']);
    assert.deepEqual(stand.violations, []);
    for (const token of stand.tokens) assert.ok(!relay.log().includes(token), 'installation token in the log');
  });
});

describe('github-deployment target on two replicas sharing one Redis', () => {
  let stand;
  let redis;
  let a;
  let b;

  before(async () => {
    [stand, redis] = await Promise.all([startGitHubStandIn({ token: GITHUB_TOKEN }), startRedis()]);
    const config = { ...deploymentConfig(stand), storage: { redis: { url: redis.url, keyPrefix: `it-${uniqueSuffix()}:` } } };
    const files = { 'github-token': `${GITHUB_TOKEN}\n` };
    [a, b] = await Promise.all([startRelay(config, { files }), startRelay(config, { files })]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await stand?.close();
  });

  test('events of one revision at both replicas at once: one Deployment per revision', async () => {
    const name = `replicas-${uniqueSuffix()}`;
    const shas = [stand.newCommit(), stand.newCommit(), stand.newCommit()];
    // Each revision's rollout, its events split between the replicas and posted together.
    await Promise.all(
      shas.flatMap((sha) => [
        post(a, rolloutEvent(name, sha, 'Progressing')),
        post(b, rolloutEvent(name, sha, 'HealthCheckFailed')),
        post(a, rolloutEvent(name, sha, 'ReconciliationSucceeded')),
      ]),
    );
    // Settled: every delivery done by one replica or the other. A status accepted before one
    // delivered first is skipped as superseded, so how many land depends on the race.
    const delivered = async () => (await deliveredCount(a)) + (await deliveredCount(b));
    await waitFor(async () => (await delivered()) === 9, { what: 'nine deliveries settled' });
    for (const sha of shas) {
      assert.equal(stand.deploymentsFor(sha).length, 1, `one Deployment of ${sha}`);
      assert.ok(stand.deploymentsFor(sha)[0].statuses.length >= 1);
    }
    assert.deepEqual(stand.violations, []);
  });
});
