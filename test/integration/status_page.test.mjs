// The status page in a real browser (Debian's Chromium, driven by playwright-core): each event
// with its fate, the failing Flux objects, a dead letter and its replay behind the admin token.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';

import { chromium } from 'playwright-core';

import {
  baseConfig,
  cleanup,
  fluxEvent,
  makeTempDir,
  postEvent,
  relayBinary,
  request,
  startAlertmanager,
  startRelay,
  uniqueSuffix,
  waitFor,
} from './harness.mjs';

const CHROMIUM = process.env.FLUXRELAY_CHROMIUM || '/usr/bin/chromium';
const ADMIN_TOKEN = 'status-page-admin-token-0123456789';
const EXCLUSION = 'ignore-me-[0-9]+';
// Screenshots go next to the binary under test (a build folder), never into the source tree.
const ARTIFACTS = process.env.FLUXRELAY_TEST_ARTIFACTS || path.join(path.dirname(relayBinary), 'test-artifacts');
// The page polls every 3 s; give the browser a few rounds on busy cores.
const PAGE_TIMEOUT_MS = 30_000;

// A stand-in for an Alertmanager that refuses the first alert with 400 (as the real one does for
// an alert that fails validation) and accepts the rest. It checks requests as the real API does.
async function startStandIn({ failures = 1 } = {}) {
  const standIn = { requests: [], port: 0 };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const answer = (status, text) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(text);
      };
      if (req.method !== 'POST' || req.url !== '/api/v2/alerts') {
        answer(404, JSON.stringify({ code: 404, message: `no route for ${req.method} ${req.url}` }));
        return;
      }
      if (!String(req.headers['content-type'] || '').startsWith('application/json')) {
        answer(415, JSON.stringify({ code: 415, message: 'expected application/json' }));
        return;
      }
      let alerts;
      try {
        alerts = JSON.parse(body);
      } catch {
        answer(400, JSON.stringify({ code: 400, message: 'body is not JSON' }));
        return;
      }
      if (!Array.isArray(alerts) || alerts.some((alert) => !alert.labels || Object.keys(alert.labels).length === 0)) {
        answer(400, JSON.stringify({ code: 400, message: 'alerts must be a list of alerts with labels' }));
        return;
      }
      standIn.requests.push(alerts);
      if (standIn.requests.length <= failures) {
        answer(400, JSON.stringify({ code: 400, message: 'stand-in refuses this alert on purpose' }));
        return;
      }
      answer(200, '');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  standIn.port = server.address().port;
  standIn.url = `http://127.0.0.1:${standIn.port}`;
  standIn.close = () => new Promise((resolve) => server.close(resolve));
  return standIn;
}

describe('status page', () => {
  let am;
  let standIn;
  let relay;
  let context;
  const run = uniqueSuffix();
  const delivered = fluxEvent({
    involvedObject: { kind: 'Kustomization', name: `apps-${run}` },
    message: `Health check failed for apps ${run}`,
    metadata: { run },
  });
  // Attacker-controlled text: must show as text, never run.
  const dropped = fluxEvent({
    involvedObject: { kind: 'Kustomization', name: `noisy-${run}` },
    severity: 'info',
    reason: 'ReconciliationSucceeded',
    message: `ignore-me-42 <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>`,
    metadata: { run },
  });
  const dead = fluxEvent({
    involvedObject: { kind: 'HelmRelease', namespace: 'apps', name: `podinfo-${run}` },
    reason: 'InstallFailed',
    message: `Helm install failed for podinfo ${run}`,
    metadata: { run },
  });

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}: run scripts/install-deps.sh (Debian package chromium)`);
    }
    am = await startAlertmanager();
    standIn = await startStandIn();
    const config = baseConfig({ alertmanagerUrl: am.url });
    config.admin = { tokenFile: './admin-token' };
    config.targets.push({
      name: 'standin',
      type: 'alertmanager',
      address: `${standIn.url}/api/v2/alerts`,
      timeout: '5s',
      retry: { initialInterval: '100ms', maxInterval: '1s' },
    });
    config.routes = [
      {
        name: 'kustomizations-to-alertmanager',
        source: 'flux',
        eventSources: [{ kind: 'Kustomization', name: '*' }],
        exclusionList: [EXCLUSION],
        targets: ['alertmanager'],
      },
      {
        name: 'helmreleases-to-standin',
        source: 'flux',
        eventSources: [{ kind: 'HelmRelease', name: '*' }],
        targets: ['standin'],
      },
    ];
    relay = await startRelay(config, { files: { 'admin-token': `${ADMIN_TOKEN}\n` } });
    await fsp.mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    try {
      if (context) await context.close();
      if (relay) await relay.stop();
    } finally {
      if (standIn) await standIn.close();
      await cleanup();
    }
  });

  it('serves the page with a strict content security policy', async () => {
    const response = await request(`${relay.adminUrl}/`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
    const policy = response.headers.get('content-security-policy') || '';
    assert.match(policy, /default-src 'none'/);
    assert.match(policy, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
    assert.doesNotMatch(policy, /unsafe-eval/);
    assert.match(response.text, /^<!doctype html>/);
  });

  it('shows where each event went or why it did not, and replays a dead letter', async () => {
    for (const event of [delivered, dropped, dead]) {
      const response = await postEvent(relay, '/flux/events', event);
      assert.equal(response.status, 202, response.text);
    }
    // And one the relay refuses: no signature.
    assert.equal((await postEvent(relay, '/flux/events', fluxEvent({ involvedObject: { name: `unsigned-${run}` } }), { key: null })).status, 401);

    // The real peers saw what the page is about to show.
    await waitFor(async () => (await am.alerts({ name: delivered.involvedObject.name })).length === 1, { what: 'alert in Alertmanager' });
    await waitFor(() => standIn.requests.length === 1, { what: 'the stand-in to refuse the HelmRelease alert' });
    await waitFor(async () => (await request(`${relay.adminUrl}/api/v1/deadletters`)).json.length === 1, { what: 'a dead letter' });

    const profile = await makeTempDir('fluxrelay-it-chromium-');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    const page = context.pages()[0] || (await context.newPage());
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/401 \(Unauthorized\)/.test(message.text())) problems.push(`console: ${message.text()}`);
    });
    page.on('dialog', (dialog) => {
      problems.push(`unexpected ${dialog.type()} dialog: ${dialog.message()}`);
      dialog.dismiss();
    });

    await page.goto(`${relay.adminUrl}/`);
    const events = page.locator('#event-list > li.event');
    const item = (event) => events.filter({ hasText: event.involvedObject.name });
    await waitFor(async () => (await events.count()) >= 4, { timeoutMs: PAGE_TIMEOUT_MS, what: 'four events on the page' });

    // Delivered: the route that took it, the target, the attempt with its latency.
    const deliveredItem = item(delivered);
    await waitFor(async () => (await deliveredItem.getAttribute('data-fate')) === 'delivered', { timeoutMs: PAGE_TIMEOUT_MS, what: 'the delivered event to show as delivered' });
    const deliveredText = await deliveredItem.innerText();
    assert.match(deliveredText, /route kustomizations-to-alertmanager/);
    assert.match(deliveredText, /target alertmanager/);
    assert.match(deliveredText, /#1\s+delivered\s+[\d.]+ (ms|s)/);
    // ... and the other route, with the filter that stopped it there.
    assert.match(deliveredText, /route helmreleases-to-standin\s+dropped by eventSources/);

    // Dropped: the filter's name and the pattern that matched, the hostile text shown as text.
    const droppedItem = item(dropped);
    assert.equal(await droppedItem.getAttribute('data-fate'), 'dropped');
    const droppedText = await droppedItem.innerText();
    assert.match(droppedText, /dropped by exclusionList/);
    assert.ok(droppedText.includes(`"${EXCLUSION}"`), droppedText);
    assert.ok(droppedText.includes('<img src=x onerror="window.__pwned=1">'), droppedText);
    assert.equal(await droppedItem.locator('img, script').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);

    // Dead: the refused attempt with the stand-in's answer.
    const deadItem = item(dead);
    assert.equal(await deadItem.getAttribute('data-fate'), 'dead');
    const deadText = await deadItem.innerText();
    assert.match(deadText, /route helmreleases-to-standin/);
    assert.match(deadText, /target standin\s+dead letter/);
    assert.match(deadText, /#1\s+dead letter\s+[\d.]+ (ms|s)\s+.*400/);

    // Refused at the door.
    const rejected = events.filter({ has: page.locator('.badge', { hasText: 'Rejected: HTTP 401' }) });
    assert.ok((await rejected.count()) >= 1, 'a rejected request is listed');

    // Failing objects: the two error events, not the info one.
    const objects = page.locator('#object-list');
    await waitFor(async () => (await objects.innerText()).includes(dead.involvedObject.name), { timeoutMs: PAGE_TIMEOUT_MS, what: 'failing objects' });
    const objectsText = await objects.innerText();
    assert.ok(objectsText.includes(delivered.involvedObject.name), objectsText);
    assert.ok(!objectsText.includes(dropped.involvedObject.name), objectsText);
    // ... each with where its error went.
    const objectItem = (event) => objects.locator('li.event').filter({ hasText: event.involvedObject.name });
    assert.equal(await objectItem(delivered).getAttribute('data-fate'), 'delivered');
    assert.equal(await objectItem(dead).getAttribute('data-fate'), 'dead');

    // Targets and counters.
    const standInCard = page.locator('#target-list [data-target="standin"]');
    await waitFor(async () => /1\s+dead letters/.test(await standInCard.innerText()), { timeoutMs: PAGE_TIMEOUT_MS, what: 'the stand-in card to count one dead letter' });
    assert.match(await page.locator('#target-list [data-target="alertmanager"]').innerText(), /1 delivered/);
    // Every request counts as received; the unsigned one also as rejected.
    assert.match(await page.locator('#sources').innerText(), /flux\s+4\s+1\s/);

    // Dead letters: one row, with a Replay button.
    const letters = page.locator('#deadletter-list tbody tr');
    assert.equal(await letters.count(), 1);
    assert.match(await letters.first().innerText(), /helmreleases-to-standin → standin/);
    assert.match(await letters.first().innerText(), /400/);

    await page.screenshot({ path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true });

    // Replay: the relay wants the admin token, the page asks for it once and keeps it.
    await letters.first().getByRole('button', { name: /Replay dead letter/ }).click();
    const dialog = page.locator('#token-dialog');
    await dialog.waitFor({ state: 'visible', timeout: PAGE_TIMEOUT_MS });
    await page.screenshot({ path: path.join(ARTIFACTS, 'status-page-token.png') });
    await dialog.getByRole('textbox', { name: 'Admin token' }).fill(ADMIN_TOKEN);
    await dialog.getByRole('button', { name: 'Use token' }).click();
    await page.locator('#replay-status', { hasText: 'queued for delivery again' }).waitFor({ timeout: PAGE_TIMEOUT_MS });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('fluxrelay.adminToken')), ADMIN_TOKEN);

    await page.locator('#deadletter-list', { hasText: 'No dead letter.' }).waitFor({ timeout: PAGE_TIMEOUT_MS });
    await waitFor(() => standIn.requests.length === 2, { what: 'the replayed delivery at the stand-in' });
    assert.equal(standIn.requests[1][0].labels.name, dead.involvedObject.name);
    // The replayed attempt joins the event's history.
    await waitFor(async () => (await deadItem.getAttribute('data-fate')) === 'delivered', { timeoutMs: PAGE_TIMEOUT_MS, what: 'the replayed event to show as delivered' });

    await page.screenshot({ path: path.join(ARTIFACTS, 'status-page-after-replay.png'), fullPage: true });

    // A phone: everything fits the width, nothing scrolls sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px on a phone`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'status-page-phone.png'), fullPage: true });

    assert.deepEqual(problems, []);
    console.log(`status page screenshots in ${ARTIFACTS}`);
  });
});
