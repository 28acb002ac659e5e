// resolve: true: a failing object's alert fires in Alertmanager and is resolved when
// the object recovers, across a restart of the relay, also on a route that takes errors only.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { baseConfig, cleanup, fluxEvent, postEvent, recoveryEvent, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

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
});
