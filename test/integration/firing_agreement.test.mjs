// resolve: true under concurrency: 40 HelmReleases, six rounds, each round one error or info event
// per object, all posted at once, each to a random replica. Whatever replica delivers which event,
// and in whatever order, Alertmanager ends with exactly the objects whose last event was an error
// firing. Three runs each, on SQLite (one relay) and on Redis (two replicas of one relay).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { cleanup, fluxEvent, metricSample, postEvent, startAlertmanager, startRedis, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

const OBJECTS = 40;
const ROUNDS = 6;
const ROUND_INTERVAL_MS = 1_500;
const RUNS = 3;

after(cleanup);

function relayConfig({ alertmanagerUrl, storage }) {
  return {
    storage,
    sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
    targets: [{
      name: 'alertmanager',
      type: 'alertmanager',
      address: `${alertmanagerUrl}/api/v2/alerts`,
      resolve: true,
      timeout: '5s',
      retry: { initialInterval: '100ms', maxInterval: '1s' },
    }],
    routes: [{ name: 'errors', source: 'flux', eventSeverity: 'error', dedup: { mode: 'none' }, targets: ['alertmanager'] }],
  };
}

// A small seeded generator (mulberry32): every run draws the same sequence of severities and
// replicas from its seed, so a failure can be replayed.
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function helmReleaseEvent(name, run, severity) {
  return fluxEvent({
    involvedObject: { kind: 'HelmRelease', namespace: 'apps', name, apiVersion: 'helm.toolkit.fluxcd.io/v2' },
    severity,
    reason: severity === 'error' ? 'UpgradeFailed' : 'UpgradeSucceeded',
    message: `${severity === 'error' ? 'Helm upgrade failed' : 'Helm upgrade succeeded'} (${uniqueSuffix()})`,
    metadata: { run },
    reportingController: 'helm-controller',
  });
}

async function queueDepth(relay) {
  const text = await (await fetch(`${relay.adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  return Number(metricSample(text, 'fluxrelay_queue_depth', { target: 'alertmanager' }) ?? 0);
}

// One run of the scenario; returns the names firing in Alertmanager and the names expected.
async function runScenario(am, replicas, seed) {
  const run = `run-${seed}-${uniqueSuffix()}`;
  const next = random(seed);
  const names = Array.from({ length: OBJECTS }, (_, i) => `hr-${i}-${run}`);
  const last = new Map();
  for (let round = 0; round < ROUNDS; round += 1) {
    const posts = names.map((name) => {
      const severity = next() < 0.5 ? 'error' : 'info';
      last.set(name, severity);
      const replica = replicas[Math.floor(next() * replicas.length)];
      return postEvent(replica, '/flux/events', helmReleaseEvent(name, run, severity));
    });
    for (const response of await Promise.all(posts)) assert.equal(response.status, 202, response.text);
    if (round + 1 < ROUNDS) await new Promise((resolve) => setTimeout(resolve, ROUND_INTERVAL_MS));
  }
  const expected = names.filter((name) => last.get(name) === 'error').sort();
  await waitFor(async () => (await Promise.all(replicas.map(queueDepth))).every((depth) => depth === 0), { what: 'every delivery made' });
  let firing = [];
  try {
    await waitFor(async () => {
      firing = (await am.alerts({ run })).filter((alert) => alert.status.state === 'active').map((alert) => alert.labels.name).sort();
      return JSON.stringify(firing) === JSON.stringify(expected);
    }, { timeoutMs: 15_000, what: 'the firing alerts to match the last events' });
  } catch {
    // Compared below, where the difference is shown.
  }
  return { firing, expected };
}

function assertAgree({ firing, expected }, label) {
  const extra = firing.filter((name) => !expected.includes(name));
  const missing = expected.filter((name) => !firing.includes(name));
  assert.deepEqual({ extra, missing }, { extra: [], missing: [] }, `${label}: ${firing.length} firing, ${expected.length} expected`);
}

describe('firing alerts follow each object\'s last event', () => {
  let am;

  before(async () => {
    am = await startAlertmanager();
  });

  it('one relay on SQLite, three runs', async () => {
    const relay = await startRelay(relayConfig({ alertmanagerUrl: am.url, storage: { path: './data' } }));
    for (let i = 0; i < RUNS; i += 1) assertAgree(await runScenario(am, [relay], 1_000 + i), `SQLite run ${i + 1}`);
    await relay.stop();
  });

  it('two replicas on one Redis, three runs', async () => {
    const redis = await startRedis();
    const storage = { redis: { url: redis.url, keyPrefix: `firing-${uniqueSuffix()}:` } };
    const config = relayConfig({ alertmanagerUrl: am.url, storage });
    const replicas = await Promise.all([startRelay(config), startRelay(config)]);
    for (let i = 0; i < RUNS; i += 1) assertAgree(await runScenario(am, replicas, 2_000 + i), `Redis run ${i + 1}`);
    await Promise.all(replicas.map((relay) => relay.stop()));
    await redis.stop();
  });
});
