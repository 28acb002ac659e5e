// /metrics: valid for promtool on a live scrape, and the counters follow the traffic.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { baseConfig, cleanup, fluxEvent, metricSample, postEvent, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

describe('metrics', () => {
  it('passes promtool and counts received, rejected, dropped and delivered events', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, route: { exclusionList: ['dial.*tcp.*timeout'] } }));
    const scrape = async () => (await fetch(`${relay.adminUrl}/metrics`)).text();
    const run = uniqueSuffix();

    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ metadata: { run } }))).status, 202);
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ message: 'dial tcp 10.0.0.1:443: i/o timeout', metadata: { run } }))).status, 202);
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent(), { key: 'wrong-key' })).status, 401);
    await waitFor(async () => metricSample(await scrape(), 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' }) >= 1, {
      what: 'a delivered count',
    });

    const text = await scrape();
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

    assert.equal(metricSample(text, 'fluxrelay_events_received_total', { source: 'flux' }), 3);
    assert.equal(metricSample(text, 'fluxrelay_events_rejected_total', { source: 'flux', reason: 'signature' }), 1);
    assert.equal(metricSample(text, 'fluxrelay_events_dropped_total', { route: 'all-to-alertmanager', reason: 'exclusion' }), 1);
    assert.ok(metricSample(text, 'fluxrelay_delivery_duration_seconds_count', { target: 'alertmanager' }) >= 1);
    // One delivery so far, in one batch: a batch is never counted without what it carried.
    const batches = metricSample(text, 'fluxrelay_delivery_batches_total', { target: 'alertmanager' });
    assert.ok(batches >= 1 && batches <= metricSample(text, 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' }),
      `batches ${batches}`);
    assert.equal(metricSample(text, 'fluxrelay_config_last_reload_successful'), 1);
    assert.ok(metricSample(text, 'process_resident_memory_bytes') > 0);
    assert.equal(metricSample(text, 'fluxrelay_build_info'), 1);
    // Read from storage at scrape time: every configured target has its gauges.
    assert.equal(typeof metricSample(text, 'fluxrelay_queue_depth', { target: 'alertmanager' }), 'number');
    assert.equal(metricSample(text, 'fluxrelay_dead_letters', { target: 'alertmanager' }), 0);

    // Counters move with the traffic.
    for (let i = 0; i < 5; i += 1) {
      await postEvent(relay, '/flux/events', fluxEvent({ involvedObject: { name: `more-${i}` }, metadata: { run } }));
    }
    assert.equal(metricSample(await scrape(), 'fluxrelay_events_received_total', { source: 'flux' }), 8);
    await relay.stop();
    await am.stop();
  });
});
