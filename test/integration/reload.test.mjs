// Hot reload: a valid file is swapped in while traffic flows, an invalid one is
// rejected and the old config keeps serving, a removed target's work becomes dead letters.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';

import { baseConfig, cleanup, fluxEvent, postEvent, startAlertmanager, startRelay, toYaml, uniqueSuffix, waitFor } from './harness.mjs';

after(cleanup);

async function scrape(relay) {
  return (await fetch(`${relay.adminUrl}/metrics`)).text();
}

function reloadGauge(metrics) {
  const match = /^fluxrelay_config_last_reload_successful (\d)$/m.exec(metrics);
  return match ? Number(match[1]) : null;
}

// Rewrites the relay's config file in place, keeping its listen addresses.
async function rewrite(relay, config) {
  const current = relay.configText;
  const listen = (section) => new RegExp(`^${section}:\\n\\s+listen:\\s*"?([^"\\s]+)"?`, 'm').exec(current)[1];
  const next = structuredClone(config);
  next.server = { ...(next.server || {}), listen: listen('server') };
  next.admin = { ...(next.admin || {}), listen: listen('admin') };
  const text = `${toYaml(next)}\n`;
  // Written beside and renamed over, as editors and ConfigMap updates do.
  await fs.writeFile(`${relay.configFile}.tmp`, text);
  await fs.rename(`${relay.configFile}.tmp`, relay.configFile);
  relay.configText = text;
}

describe('config reload', () => {
  it('swaps a valid config in without losing traffic, and keeps the old one when the new is invalid', async () => {
    const am = await startAlertmanager();
    const run = uniqueSuffix();
    const blocking = baseConfig({ alertmanagerUrl: am.url, route: { exclusionList: ['blocked-by-first-config'] } });
    const relay = await startRelay(blocking, { logLevel: 'info' });
    const event = (name, message) => fluxEvent({ involvedObject: { name }, message, metadata: { run } });

    assert.equal((await postEvent(relay, '/flux/events', event('first', 'blocked-by-first-config'))).status, 202);

    // Traffic flows throughout the reload: every request must be answered 202.
    let flowing = true;
    const statuses = [];
    const traffic = (async () => {
      for (let i = 0; flowing; i += 1) {
        statuses.push((await postEvent(relay, '/flux/events', event(`flow-${i}`, `during reload ${i}`))).status);
      }
    })();

    await rewrite(relay, baseConfig({ alertmanagerUrl: am.url, route: { exclusionList: ['blocked-by-second-config'] } }));
    await waitFor(() => relay.logLines().some((line) => /config reloaded/.test(line.msg || '')), { what: 'the reload to be logged' });
    flowing = false;
    await traffic;
    assert.ok(statuses.length > 0 && statuses.every((status) => status === 202), `statuses during reload: ${[...new Set(statuses)]}`);
    assert.equal(reloadGauge(await scrape(relay)), 1);

    // The new rules apply: what the first config blocked passes, what the second blocks does not.
    assert.equal((await postEvent(relay, '/flux/events', event('second-blocked', 'blocked-by-second-config'))).status, 202);
    assert.equal((await postEvent(relay, '/flux/events', event('first', 'blocked-by-first-config now passes'))).status, 202);
    await waitFor(async () => (await am.alerts({ run, name: 'first' })).length === 1, { what: 'the formerly blocked event' });
    const flowCount = statuses.length;
    await waitFor(async () => (await am.alerts([`run="${run}"`, 'name=~"flow-.*"'])).length === flowCount, {
      what: `all ${flowCount} events posted during the reload`,
    });
    assert.equal((await am.alerts({ run, name: 'second-blocked' })).length, 0);

    // An invalid file: rejected, counted, and the running config keeps serving.
    await fs.writeFile(relay.configFile, `${relay.configText}\nbogusKey: true\n`);
    await waitFor(async () => reloadGauge(await scrape(relay)) === 0, { what: 'fluxrelay_config_last_reload_successful 0' });
    assert.ok(relay.logLines().some((line) => line.level === 'error' && /bogusKey/.test(line.msg || '')), 'the rejection names the problem');
    assert.equal((await postEvent(relay, '/flux/events', event('after-invalid', 'still served'))).status, 202);
    await waitFor(async () => (await am.alerts({ run, name: 'after-invalid' })).length === 1, { what: 'delivery under the old config' });

    // SIGHUP reloads too: back to a valid file, gauge back to 1.
    await fs.writeFile(relay.configFile, relay.configText);
    relay.process.kill('SIGHUP');
    await waitFor(async () => reloadGauge(await scrape(relay)) === 1, { what: 'a successful reload after SIGHUP' });

    await relay.stop();
    await am.stop();
  });

  it('turns the undelivered work of a removed target into dead letters', async () => {
    const am = await startAlertmanager();
    const config = baseConfig({ alertmanagerUrl: am.url });
    // A second target nobody answers: its deliveries stay queued until it is removed.
    config.targets.push({ name: 'unreachable', type: 'alertmanager', address: 'http://127.0.0.1:9/api/v2/alerts', retry: { initialInterval: '1s', maxInterval: '5s' } });
    config.routes[0].targets.push('unreachable');
    const relay = await startRelay(config, { logLevel: 'info' });
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ metadata: { run: uniqueSuffix() } }))).status, 202);

    const trimmed = baseConfig({ alertmanagerUrl: am.url });
    await rewrite(relay, trimmed);
    let letters = [];
    await waitFor(
      async () => {
        letters = await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json();
        return letters.length === 1;
      },
      { what: 'a dead letter for the removed target' },
    );
    assert.equal(letters[0].target, 'unreachable');
    assert.match(letters[0].reason, /target removed/);
    await relay.stop();
    await am.stop();
  });
});
