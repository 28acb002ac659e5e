// Clock skew: events stamped by a controller whose clock runs 2 h ahead, or 3 days behind, become
// active alerts in a real Alertmanager, on a plain target and on a resolve: true one; none is a
// dead letter, and a recovery stamped in the future still resolves.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { cleanup, fluxEvent, postEvent, recoveryEvent, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

const HOUR_MS = 60 * 60 * 1000;

// RFC 3339 without fractions, as Flux stamps its events.
const stamp = (offsetMs) => new Date(Date.now() + offsetMs).toISOString().replace(/\.\d+Z$/, 'Z');

describe('clock skew', () => {
  it('delivers events from a clock 2 h ahead and one 3 days behind, as active alerts, on plain and resolve targets', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay({
      storage: { path: './data' },
      sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
      targets: [
        { name: 'plain', type: 'alertmanager', address: `${am.url}/api/v2/alerts`, retry: { initialInterval: '100ms', maxInterval: '500ms' } },
        { name: 'resolving', type: 'alertmanager', address: `${am.url}/api/v2/alerts`, resolve: true, retry: { initialInterval: '100ms', maxInterval: '500ms' } },
      ],
      routes: [
        { name: 'plain', source: 'flux', eventSeverity: 'error', eventMetadata: { via: 'plain' }, targets: ['plain'] },
        { name: 'resolving', source: 'flux', eventSeverity: 'error', eventMetadata: { via: 'resolving' }, targets: ['resolving'] },
      ],
    });
    const run = uniqueSuffix();
    const failing = (name, offsetMs) =>
      fluxEvent({ involvedObject: { name: `${name}-${run}` }, reason: 'HealthCheckFailed', timestamp: stamp(offsetMs), metadata: { run } });
    const ahead = failing('ahead', 2 * HOUR_MS);
    const behind = failing('behind', -72 * HOUR_MS);
    for (const event of [ahead, behind]) assert.equal((await postEvent(relay, '/flux/events', event)).status, 202);

    // Each object on each route: four active alerts.
    await waitFor(async () => (await am.alerts({ run })).length === 4, { what: 'four alerts firing' });
    for (const alert of await am.alerts({ run })) {
      assert.equal(alert.status.state, 'active', `${alert.labels.name} via ${alert.labels.via}`);
      assert.ok(Date.parse(alert.startsAt) <= Date.now(), `${alert.labels.name} starts no later than now: ${alert.startsAt}`);
      if (alert.labels.name === behind.involvedObject.name) {
        assert.equal(Date.parse(alert.startsAt), Date.parse(behind.timestamp), 'an old failure keeps its own start');
      }
    }

    // The recovery, stamped 2 h ahead too, resolves the alert on the resolve: true target.
    const recovered = recoveryEvent(ahead, { timestamp: stamp(2 * HOUR_MS) });
    assert.equal((await postEvent(relay, '/flux/events', recovered)).status, 202);
    await waitFor(async () => (await am.alerts({ run, via: 'resolving', name: ahead.involvedObject.name })).length === 0, {
      what: 'the alert resolved',
    });

    const letters = await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json();
    assert.deepEqual(letters, [], 'no dead letters');
    await relay.stop();
    await am.stop();
  });
});
