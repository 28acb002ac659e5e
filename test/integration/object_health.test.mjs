// fluxrelay_flux_object_failing on a live relay's /metrics: an error event makes its object's
// series with the reason, another reason replaces it, an info event removes it; the SQLite spool
// keeps it across a restart, and two replicas on one Redis show the same objects. Whatever the
// routes: the objects here match none.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { baseConfig, cleanup, fluxEvent, postEvent, recoveryEvent, startAlertmanager, startRedis, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

const METRIC = 'fluxrelay_flux_object_failing';

// The failing objects a scrape shows: "kind/namespace/name reason" → value, for names that
// start with `prefix` (other tests' objects are not this test's business).
function failingSeries(text, prefix) {
  const series = new Map();
  const line = new RegExp(`^${METRIC}\\{kind="([^"]*)",namespace="([^"]*)",name="([^"]*)",reason="([^"]*)"\\} (\\S+)$`, 'gm');
  for (const [, kind, namespace, name, reason, value] of text.matchAll(line)) {
    if (name.startsWith(prefix)) series.set(`${kind}/${namespace}/${name} ${reason}`, Number(value));
  }
  return series;
}

async function scrape(relay) {
  const response = await fetch(`${relay.adminUrl}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

// Polls until the relay's series for `prefix` are exactly `expected` (entries as failingSeries).
async function expectFailing(relay, prefix, expected, what) {
  let last;
  await waitFor(async () => {
    last = failingSeries(await scrape(relay), prefix);
    return JSON.stringify([...last].sort()) === JSON.stringify([...expected].sort());
  }, { what: `${what}: ${JSON.stringify([...expected])} (last scrape: ${JSON.stringify(last && [...last])})` });
}

// An event about Kustomization apps/`name`.
function event(name, overrides = {}) {
  return fluxEvent({ involvedObject: { namespace: 'apps', name }, ...overrides });
}

async function post(relay, body) {
  const response = await postEvent(relay, '/flux/events', body);
  assert.equal(response.status, 202, response.text);
}

// The route takes only Kustomization "routed": the objects below are seen, never delivered.
function config(am) {
  return baseConfig({ alertmanagerUrl: am.url, route: { eventSources: [{ kind: 'Kustomization', name: 'routed' }] } });
}

describe('object health metric', () => {
  it('shows an object while its latest event is an error, with its reason, and keeps it across a restart', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(config(am));
    const prefix = `podinfo-${uniqueSuffix()}`;
    const podinfo = event(`${prefix}-a`, { reason: 'BuildFailed' });

    await post(relay, podinfo);
    await post(relay, event(`${prefix}-b`, { reason: 'InstallFailed', involvedObject: { kind: 'HelmRelease', namespace: 'apps', name: `${prefix}-b` } }));
    await expectFailing(relay, prefix, new Map([
      [`Kustomization/apps/${prefix}-a BuildFailed`, 1],
      [`HelmRelease/apps/${prefix}-b InstallFailed`, 1],
    ]), 'two failing objects');

    const text = await scrape(relay);
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

    // Another reason: the object's one series changes its label.
    await post(relay, event(`${prefix}-a`, { reason: 'HealthCheckFailed' }));
    await expectFailing(relay, prefix, new Map([
      [`Kustomization/apps/${prefix}-a HealthCheckFailed`, 1],
      [`HelmRelease/apps/${prefix}-b InstallFailed`, 1],
    ]), 'the new reason only');

    // Its info event ends it; a trace event says nothing of it.
    await post(relay, recoveryEvent(podinfo));
    await post(relay, event(`${prefix}-b`, { severity: 'trace', reason: 'Progressing', involvedObject: { kind: 'HelmRelease', namespace: 'apps', name: `${prefix}-b` } }));
    await expectFailing(relay, prefix, new Map([[`HelmRelease/apps/${prefix}-b InstallFailed`, 1]]), 'the recovered object gone');

    await relay.stop();
    await relay.restart();
    await expectFailing(relay, prefix, new Map([[`HelmRelease/apps/${prefix}-b InstallFailed`, 1]]), 'the failing object after a restart');
    await relay.stop();
  });

  it('is the same on two replicas sharing a Redis', async () => {
    const [am, redis] = await Promise.all([startAlertmanager(), startRedis()]);
    const shared = { ...config(am), storage: { redis: { url: redis.url, keyPrefix: `it-${uniqueSuffix()}:` } } };
    const [a, b] = await Promise.all([startRelay(shared), startRelay(shared)]);
    const prefix = `shared-${uniqueSuffix()}`;

    await post(a, event(`${prefix}-a`, { reason: 'BuildFailed' }));
    await post(b, event(`${prefix}-b`, { reason: 'ArtifactFailed' }));
    const both = new Map([
      [`Kustomization/apps/${prefix}-a BuildFailed`, 1],
      [`Kustomization/apps/${prefix}-b ArtifactFailed`, 1],
    ]);
    await expectFailing(a, prefix, both, 'replica a');
    await expectFailing(b, prefix, both, 'replica b');

    // One replica hears of the recovery; the other stops showing the object too.
    await post(b, recoveryEvent(event(`${prefix}-a`)));
    const one = new Map([[`Kustomization/apps/${prefix}-b ArtifactFailed`, 1]]);
    await expectFailing(a, prefix, one, 'replica a after the recovery');
    await expectFailing(b, prefix, one, 'replica b after the recovery');
    await Promise.all([a.stop(), b.stop()]);
  });
});
