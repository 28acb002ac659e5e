// The FluxObjectFailing alert deploy/ ships, end to end with nothing but the relay: a real
// Prometheus scrapes a real relay's /metrics, evaluates the shipped rule and sends to a real
// Alertmanager. An error event fires the alert for its object, with the rule's labels and the
// reason in its description; the object's info event resolves it, and another object still
// failing keeps firing.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

import { baseConfig, cleanup, fluxEvent, postEvent, recoveryEvent, repoRoot, startAlertmanager, startPrometheus, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

const ALERT = 'FluxObjectFailing';
const baseDir = path.join(repoRoot, 'deploy', 'kubernetes', 'base');

// The shipped rule, read from deploy/ as it is: expr, labels and annotations unchanged, so that
// what is tested is what users get. Only `for` is shortened: the shipped 15 minutes cannot run
// in a test, and what it delays is Prometheus's own logic, which promtool's rule test in
// deploy.test.mjs covers.
function shippedRule() {
  const rule = parse(fs.readFileSync(path.join(baseDir, 'prometheusrule.yaml'), 'utf8'));
  const found = rule.spec.groups.flatMap((group) => group.rules).find((r) => r.alert === ALERT);
  assert.ok(found, `deploy/ ships the ${ALERT} rule`);
  assert.ok(found.for, `the shipped ${ALERT} rule waits (for:) before firing`);
  return { ...found, for: '0s' };
}

// The shipped PodMonitor's honorLabels: with it, the metric's `namespace` (the Flux object's)
// wins over the target's (the relay pod's).
function shippedHonorLabels() {
  const monitor = parse(fs.readFileSync(path.join(baseDir, 'podmonitor.yaml'), 'utf8'));
  return Boolean(monitor.spec.podMetricsEndpoints[0].honorLabels);
}

// An event about Kustomization apps/`name`.
function event(name, overrides = {}) {
  return fluxEvent({ involvedObject: { namespace: 'apps', name }, ...overrides });
}

async function post(relay, body) {
  const response = await postEvent(relay, '/flux/events', body);
  assert.equal(response.status, 202, response.text);
}

describe('FluxObjectFailing through Prometheus and Alertmanager', () => {
  it('fires per object while its latest event is an error, and resolves on its info event', async () => {
    const rule = shippedRule();
    const am = await startAlertmanager();
    // The route takes only Kustomization "routed": the relay forwards none of these events
    // itself, so every alert Alertmanager shows here came from Prometheus.
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, route: { eventSources: [{ kind: 'Kustomization', name: 'routed' }] } }));
    const prom = await startPrometheus({
      // The labels the Prometheus Operator gives a pod's target, `namespace` among them.
      scrape: { targets: [new URL(relay.adminUrl).host], labels: { namespace: 'flux-system', pod: 'fluxrelay-0' }, honorLabels: shippedHonorLabels() },
      ruleGroups: [{ name: 'fluxrelay', rules: [rule] }],
      alertmanagers: [new URL(am.url).host],
    });

    const prefix = `podinfo-${uniqueSuffix()}`;
    const a = event(`${prefix}-a`, { reason: 'HealthCheckFailed' });
    const b = event(`${prefix}-b`, { reason: 'BuildFailed' });

    // This test's FluxObjectFailing alerts in Alertmanager, by object name.
    const alerts = async () => {
      const list = await am.alerts({ alertname: ALERT });
      return new Map(list.filter((alert) => alert.labels.name.startsWith(prefix)).map((alert) => [alert.labels.name, alert]));
    };
    // Polls until Alertmanager's active alerts for this test are those of `names`.
    const expectFiring = async (names, what) => {
      let last;
      try {
        return await waitFor(async () => {
          last = await alerts();
          const active = [...last.values()].filter((alert) => alert.status.state === 'active');
          return active.length === last.size && JSON.stringify([...last.keys()].sort()) === JSON.stringify([...names].sort()) && last;
        }, { what });
      } catch (error) {
        error.message += `\nAlertmanager: ${JSON.stringify(last && [...last.values()])}\nPrometheus: ${JSON.stringify(await prom.api('alerts').catch((e) => e.message))}`;
        throw error;
      }
    };

    await post(relay, a);
    await post(relay, b);
    const firing = await expectFiring([`${prefix}-a`, `${prefix}-b`], `${ALERT} active for both objects`);

    for (const [failing, reason] of [[a, 'HealthCheckFailed'], [b, 'BuildFailed']]) {
      const { involvedObject: object } = failing;
      const alert = firing.get(object.name);
      const { alertname, kind, namespace, name, ...others } = alert.labels;
      assert.deepEqual({ alertname, kind, namespace, name }, { alertname: ALERT, kind: object.kind, namespace: object.namespace, name: object.name });
      // The rule's labels and nothing else: the expression keeps only kind, namespace and name.
      assert.deepEqual(others, rule.labels ?? {}, `${name}: the rule's labels`);
      assert.deepEqual(Object.keys(alert.annotations).sort(), Object.keys(rule.annotations).sort(), `${name}: the rule's annotations`);
      for (const [key, text] of Object.entries(alert.annotations)) {
        assert.doesNotMatch(text, /\{\{|<no value>|error executing template/, `${name}: annotation ${key} rendered: ${text}`);
      }
      for (const key of ['summary', 'description']) {
        assert.ok(alert.annotations[key].includes(`${object.kind} ${object.namespace}/${object.name}`), `${name}: the ${key} names the object: ${alert.annotations[key]}`);
      }
      assert.ok(alert.annotations.description.includes(reason), `${name}: the description names the reason ${reason}: ${alert.annotations.description}`);
    }

    // Its info event: Prometheus resolves a's alert; b's keeps firing.
    await post(relay, recoveryEvent(a));
    await expectFiring([`${prefix}-b`], `${ALERT} resolved for ${prefix}-a only`);
    // Gone before the end Prometheus gave it while firing: Prometheus sent the resolution, it
    // was not Alertmanager letting it time out.
    const endsAt = Date.parse(firing.get(`${prefix}-a`).endsAt);
    assert.ok(Date.now() < endsAt, `resolved before its firing endsAt ${firing.get(`${prefix}-a`).endsAt}`);
    const stillFiring = (await alerts()).get(`${prefix}-b`);
    assert.equal(stillFiring.startsAt, firing.get(`${prefix}-b`).startsAt, 'b is the same alert, firing since its error');

    await post(relay, recoveryEvent(b));
    await expectFiring([], `${ALERT} resolved for both objects`);
    await Promise.all([prom.stop(), relay.stop()]);
  });
});
