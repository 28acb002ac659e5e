// Noise control against a real Alertmanager: an outage flood collapses to
// one alert per object, volatile messages collapse under mode normalized, thresholds hold back
// the first failures, and a failing object's alert is re-sent so Alertmanager never lets it lapse.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  baseConfig,
  cleanup,
  fluxEvent,
  metricSample,
  postEvent,
  recoveryEvent,
  startAlertmanager,
  startRelay,
  uniqueSuffix,
  waitFor,
} from './harness.mjs';

after(cleanup);

const scrape = async (relay) => (await fetch(`${relay.adminUrl}/metrics`)).text();
const counter = async (relay, name, labels) => (await metricSample(await scrape(relay), name, labels)) ?? 0;

// Posts in parallel, `width` at a time; every one must be accepted.
async function postAll(relay, events, width = 16) {
  for (let i = 0; i < events.length; i += width) {
    const answers = await Promise.all(events.slice(i, i + width).map((event) => postEvent(relay, '/flux/events', event)));
    for (const answer of answers) assert.equal(answer.status, 202, answer.text);
  }
}

describe('noise control', () => {
  it('turns an outage flood of 500 events for 20 objects into 20 alerts (mode transitions), across a restart', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, route: { dedup: { mode: 'transitions' } } }));
    const run = uniqueSuffix();
    await am.stop();

    // 25 failures per object, each with another volatile message, interleaved as a real outage is.
    const events = [];
    for (let round = 0; round < 25; round += 1) {
      for (let object = 0; object < 20; object += 1) {
        events.push(fluxEvent({
          involvedObject: { name: `app-${object}-${run}` },
          message: `Health check failed after ${round}m${object}.${round}s: dial tcp 10.0.${object}.${round}:443: connect: connection refused`,
          metadata: { run },
        }));
      }
    }
    await postAll(relay, events);
    assert.equal(await counter(relay, 'fluxrelay_events_dropped_total', { route: 'all-to-alertmanager', reason: 'unchanged' }), 480);

    await am.start();
    await waitFor(async () => (await am.alerts({ run })).length === 20, { what: '20 alerts in Alertmanager' });
    await waitFor(async () => (await counter(relay, 'fluxrelay_queue_depth', { target: 'alertmanager' })) === 0, {
      what: 'the queue to drain',
    });
    assert.equal(await counter(relay, 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' }), 20);

    // The transitions state is in storage: after a restart an unchanged failure is still held back
    // and names the event that was forwarded.
    await relay.stop();
    await relay.restart();
    assert.equal((await postEvent(relay, '/flux/events', events[0])).status, 202);
    const [latest] = await (await fetch(`${relay.adminUrl}/api/v1/events?limit=1`)).json();
    assert.equal(latest.routes[0].verdict, 'unchanged');
    assert.match(latest.routes[0].reason, /^dedup mode transitions: unchanged error\/HealthCheckFailed since event \S+, forwarded at /);
    await relay.stop();
    await am.stop();
  });

  it('collapses "Reconciliation finished in Ns" to one per window with mode normalized, not with mode flux', async () => {
    const am = await startAlertmanager();
    const config = baseConfig({ alertmanagerUrl: am.url });
    const target = config.targets[0];
    config.targets = [{ ...target, name: 'normalized' }, { ...target, name: 'flux' }];
    config.routes = [
      { name: 'normalized', source: 'flux', targets: ['normalized'], dedup: { mode: 'normalized', window: '1h' } },
      { name: 'flux', source: 'flux', targets: ['flux'], dedup: { mode: 'flux', window: '1h' } },
    ];
    const relay = await startRelay(config);
    const run = uniqueSuffix();
    const events = Array.from({ length: 30 }, (_, i) => fluxEvent({
      severity: 'info',
      reason: 'ReconciliationSucceeded',
      message: `Reconciliation finished in ${1 + i}.${(i * 37) % 100}s, next run in 10m0s`,
      metadata: { run },
    }));
    await postAll(relay, events, 1);  // in order: the first one is the one forwarded

    await waitFor(async () => (await counter(relay, 'fluxrelay_deliveries_total', { target: 'flux', outcome: 'delivered' })) === 30, {
      what: 'all 30 flux-mode deliveries',
    });
    assert.equal(await counter(relay, 'fluxrelay_deliveries_total', { target: 'normalized', outcome: 'delivered' }), 1);
    assert.equal(await counter(relay, 'fluxrelay_events_dropped_total', { route: 'normalized', reason: 'duplicate' }), 29);
    assert.equal(await counter(relay, 'fluxrelay_events_dropped_total', { route: 'flux', reason: 'duplicate' }), 0);
    // The journal shows which event went through, and each suppression names it.
    const journal = (await (await fetch(`${relay.adminUrl}/api/v1/events?limit=30`)).json()).reverse();
    const normalized = journal.map((event) => event.routes.find((route) => route.route === 'normalized'));
    assert.equal(normalized[0].verdict, 'pass');
    for (const route of normalized.slice(1)) {
      assert.equal(route.verdict, 'duplicate');
      assert.match(route.reason, new RegExp(`^dedup mode normalized: same dedup key as event ${journal[0].id}, forwarded at `));
    }

    // A different message is a different event.
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ severity: 'info', reason: 'ReconciliationSucceeded', message: 'Applied revision: main@sha1:0123456789abcdef0123456789abcdef01234567', metadata: { run } }))).status, 202);
    await waitFor(async () => (await counter(relay, 'fluxrelay_deliveries_total', { target: 'normalized', outcome: 'delivered' })) === 2, {
      what: 'the new message delivered',
    });
    await relay.stop();
    await am.stop();
  });

  it('holds back failures below the threshold', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, route: { dedup: { mode: 'none', threshold: 3, window: '1h' } } }));
    const run = uniqueSuffix();
    const failure = (i) => fluxEvent({ message: `Health check failed after ${i}s`, metadata: { run } });
    await postAll(relay, [failure(1), failure(2)], 1);
    assert.equal(await counter(relay, 'fluxrelay_events_dropped_total', { route: 'all-to-alertmanager', reason: 'below_threshold' }), 2);
    assert.deepEqual(await am.alerts({ run }), []);
    await postAll(relay, [failure(3)], 1);
    await waitFor(async () => (await am.alerts({ run })).length === 1, { what: 'the alert after the third failure' });
    await relay.stop();
    await am.stop();
  });

  it('re-sends a failing object\'s alert before it lapses, until the object recovers', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({
      alertmanagerUrl: am.url,
      target: { resolve: true, refireInterval: '1s' },
      route: { eventSeverity: 'error' },
    }));
    const run = uniqueSuffix();
    const failing = fluxEvent({ involvedObject: { name: `podinfo-${run}` }, metadata: { run } });
    assert.equal((await postEvent(relay, '/flux/events', failing)).status, 202);

    // Each alert is valid for three intervals; every re-send moves its end forward.
    const endsAt = async () => {
      const alerts = await am.alerts({ run });
      return alerts.length === 1 && alerts[0].status.state === 'active' ? Date.parse(alerts[0].endsAt) : null;
    };
    await waitFor(async () => (await endsAt()) !== null, { what: 'the alert active' });
    const first = await endsAt();
    await waitFor(async () => (await endsAt()) >= first + 2000, { what: 'the alert re-sent twice, still active' });

    assert.equal((await postEvent(relay, '/flux/events', recoveryEvent(failing))).status, 202);
    await waitFor(async () => (await am.alerts({ run })).length === 0, { what: 'the alert resolved' });
    await relay.stop();
    await am.stop();
  });
});
