// resolve: true: a failing object's alert fires in Alertmanager and is resolved when
// the object recovers, across a restart of the relay, also on a route that takes errors only,
// and with the target's templated labels and annotations.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';

import {
  baseConfig,
  cleanup,
  expectedFluxLabels,
  fluxEvent,
  postEvent,
  recoveryEvent,
  runRelayCommand,
  startAlertmanager,
  startRelay,
  uniqueSuffix,
  waitFor,
} from './harness.mjs';

after(cleanup);

describe('resolved alerts', () => {
  it('fires on failure and resolves on recovery, with a restart in between', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, target: { resolve: true }, route: { eventSeverity: 'error' } }));
    const run = uniqueSuffix();
    const failing = fluxEvent({ involvedObject: { name: `podinfo-${run}` }, reason: 'HealthCheckFailed', metadata: { run } });
    const other = fluxEvent({ involvedObject: { name: `other-${run}` }, reason: 'HealthCheckFailed', metadata: { run } });

    assert.equal((await postEvent(relay, '/flux/events', failing)).status, 202);
    assert.equal((await postEvent(relay, '/flux/events', other)).status, 202);
    // Active alerts are listed by /api/v2/alerts; resolved ones are not.
    await waitFor(async () => (await am.alerts({ run })).length === 2, { what: 'both alerts firing' });

    // The firing set survives a restart of the relay.
    await relay.stop();
    await relay.restart();

    const recovered = recoveryEvent(failing, { message: 'Applied revision: main@sha1:bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07' });
    assert.equal((await postEvent(relay, '/flux/events', recovered)).status, 202);
    await waitFor(async () => (await am.alerts({ run, name: failing.involvedObject.name })).length === 0, {
      what: 'the recovered object\'s alert resolved',
    });
    // The other object still fails: its alert keeps firing; the info event made no alert of its own.
    const left = await am.alerts({ run });
    assert.deepEqual(left.map((alert) => alert.labels.name), [other.involvedObject.name]);
    assert.equal(left[0].status.state, 'active');

    const events = await (await fetch(`${relay.adminUrl}/api/v1/events?limit=1`)).json();
    assert.match(events[0].routes[0].reason, /resolves/);
    await relay.stop();
    await am.stop();
  });

  it('fires with the target\'s templated labels and annotations, and resolves that very alert', async () => {
    const am = await startAlertmanager();
    const target = {
      resolve: true,
      labels: { cluster: 'home', team: '{metadata.team}', flux_revision: '{revision}', revision: '', owner: '{metadata.owner}' },
      annotations: { summary: '{kind}/{name}: {reason}', runbook_url: 'https://runbooks/{kind}' },
    };
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, target, route: { eventSeverity: 'error' } }));
    const run = uniqueSuffix();
    const failing = fluxEvent({ involvedObject: { name: `podinfo-${run}` }, metadata: { run, team: 'platform', summary: 'from metadata' } });
    const revision = failing.metadata.revision;

    // explain runs the same plan: it shows the alert as it will be sent.
    const eventFile = path.join(relay.dir, 'failing.json');
    await fs.writeFile(eventFile, JSON.stringify(failing));
    const explained = await runRelayCommand(['explain', '--config', relay.configFile, '--source', 'flux', '--output', 'json', eventFile]);
    assert.equal(explained.code, 0, explained.stderr);
    const [shown] = JSON.parse(JSON.parse(explained.stdout).routes[0].targets[0].requests[0].body);

    assert.equal((await postEvent(relay, '/flux/events', failing)).status, 202);
    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ run });
      return alerts.length === 1 && alerts;
    }, { what: 'the templated alert firing' });
    const { revision: dropped, summary, ...fluxLabels } = expectedFluxLabels(failing);
    assert.equal(dropped, revision, 'Flux would have sent revision as a label');
    const labels = { ...fluxLabels, cluster: 'home', team: 'platform', flux_revision: revision };
    // `revision: ""` and `owner` (no such metadata) rendered empty: neither is a label.
    assert.deepEqual(alert.labels, labels);
    assert.deepEqual(alert.annotations, {
      message: failing.message,
      summary: `Kustomization/podinfo-${run}: HealthCheckFailed`, // the target's, over metadata's
      runbook_url: 'https://runbooks/Kustomization',
    });
    assert.deepEqual(shown.labels, labels);
    assert.deepEqual(shown.annotations, alert.annotations);

    // The recovery comes with another revision and team; what it resolves is the alert that fired
    // (Alertmanager tells alerts apart by their label set: any other set would leave it active).
    const recovered = recoveryEvent(failing, {
      metadata: { run, team: 'other', revision: 'main@sha1:89abcdef0123456789abcdef0123456789abcdef' },
    });
    assert.equal((await postEvent(relay, '/flux/events', recovered)).status, 202);
    await waitFor(async () => (await am.alerts({ run })).length === 0, { what: 'the templated alert resolved' });
    await relay.stop();
    await am.stop();
  });
});
