// Alertmanager down: events are still accepted, and delivered once it is back on the same port.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { baseConfig, cleanup, expectedFluxLabels, fluxEvent, postEvent, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

// Retries every 100 ms..1 s, but a circuit breaker may hold the target for a while after an
// outage: give delivery a wide bound.
const DELIVERY_TIMEOUT_MS = 90_000;

// A warning or error log line naming the target: how a failed delivery attempt shows outside.
function isDeliveryFailure(line) {
  return ['warn', 'warning', 'error'].includes(line.level) && JSON.stringify(line).includes('alertmanager');
}

describe('alertmanager outage', () => {
  let am;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    relay = await startRelay(baseConfig({ alertmanagerUrl: am.url }));
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('delivers what was accepted while Alertmanager was down', async () => {
    // Up first: the target works before the outage.
    const run = uniqueSuffix();
    const before = fluxEvent({ involvedObject: { name: `before-outage-${run}` }, metadata: { run }, message: `before the outage ${run}` });
    assert.equal((await postEvent(relay, '/flux/events', before)).status, 202);
    await waitFor(async () => (await am.alerts({ name: before.involvedObject.name })).length === 1, { what: 'alert before the outage' });

    await am.stop();

    const during = ['Kustomization', 'HelmRelease', 'GitRepository'].map((kind, index) =>
      fluxEvent({
        involvedObject: { kind, name: `during-outage-${run}-${index}` },
        reason: 'ReconciliationFailed',
        message: `failed while Alertmanager was down (${index}, ${run})`,
        metadata: { run, phase: 'outage' },
      }),
    );
    for (const event of during) {
      const response = await postEvent(relay, '/flux/events', event);
      assert.equal(response.status, 202, response.text);
    }
    // The relay keeps answering while its target is down.
    assert.equal((await fetch(`${relay.adminUrl}/healthz`)).status, 200);

    // Only once the relay has tried and failed (logged as a warning or error naming the target)
    // does Alertmanager come back, on the same port and with empty state: the retry path runs.
    await waitFor(() => relay.logLines().some(isDeliveryFailure), { what: 'a logged failed delivery to the alertmanager target' });
    await am.start();

    const alerts = await waitFor(async () => {
      const found = await am.alerts({ run, phase: 'outage' });
      return found.length === during.length && found;
    }, { timeoutMs: DELIVERY_TIMEOUT_MS, what: `${during.length} alerts accepted during the outage` });
    for (const event of during) {
      const alert = alerts.find((candidate) => candidate.labels.name === event.involvedObject.name);
      assert.ok(alert, `alert for ${event.involvedObject.name}`);
      assert.deepEqual(alert.labels, expectedFluxLabels(event));
      assert.deepEqual(alert.annotations, { message: event.message });
    }

    // And the target is healthy again for new events.
    const afterOutage = fluxEvent({ involvedObject: { name: `after-outage-${run}` }, metadata: { run }, message: `after the outage ${run}` });
    assert.equal((await postEvent(relay, '/flux/events', afterOutage)).status, 202);
    await waitFor(async () => (await am.alerts({ name: afterOutage.involvedObject.name })).length === 1, {
      timeoutMs: DELIVERY_TIMEOUT_MS,
      what: 'alert after the outage',
    });
  });

  it('exits 0 on SIGTERM while deliveries are still being retried', async () => {
    await am.stop();
    const run = uniqueSuffix();
    const event = fluxEvent({ involvedObject: { name: `pending-${run}` }, message: `pending at shutdown ${run}` });
    assert.equal((await postEvent(relay, '/flux/events', event)).status, 202);
    const warnings = () => relay.logLines().filter(isDeliveryFailure).length;
    const before = warnings();
    await waitFor(() => warnings() > before, { what: 'a failed delivery attempt for the pending event' });
    // stop() asserts exit code 0 within its bound; a retry loop must not hold the process.
    await relay.stop();
    relay = null;
  });
});
