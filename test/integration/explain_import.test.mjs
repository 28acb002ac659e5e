// `fluxrelay explain` and `fluxrelay import-flux` as a user runs them: explain names the filter step that
// drops an event and shows the request the relay really sends; the config imported from the home-ops
// Flux manifests routes real events exactly as Flux's Alerts do, into a real Alertmanager.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';

import { startGitHubStandIn } from './github_standin.mjs';
import {
  cleanup,
  expectedFluxLabels,
  fluxEvent,
  freePort,
  makeTempDir,
  postEvent,
  recoveryEvent,
  repoRoot,
  runRelayCommand,
  startAlertmanager,
  startRelay,
  toYaml,
  uniqueSuffix,
  waitFor,
} from './harness.mjs';

const FIXTURES = path.join(repoRoot, 'test', 'integration', 'fixtures', 'home-ops');
const AM_TOKEN = 'alertmanager-bearer-token-for-explain-0123';
const HMAC_KEY = 'explain-hmac-key-0123456789abcdef';
const GITHUB_TOKEN = 'ghp_explain0123456789abcdef0123456789ab';

// Writes files (name → content) into a new temp folder; returns the folder.
async function folderWith(files) {
  const dir = await makeTempDir('fluxrelay-it-explain-');
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content, { mode: 0o600 });
  }
  return dir;
}

// A reverse proxy in front of the real Alertmanager that records each request as it arrived.
async function recordingProxy(targetUrl) {
  const recorded = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      recorded.push({ method: req.method, url: req.url, headers: req.rawHeaders, body: body.toString('utf8') });
      const headers = { ...req.headers };
      delete headers.host;
      const upstream = http.request(`${targetUrl}${req.url}`, { method: req.method, headers }, (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      upstream.end(body);
    });
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}`, port, recorded, close: () => new Promise((resolve) => server.close(resolve)) };
}

// A config exercising every filter step, with a secret in the Alertmanager target.
function explainConfig(alertmanagerUrl) {
  return {
    storage: { path: './data' },
    sources: [
      { name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' },
      { name: 'github', type: 'github', path: '/github/webhook', secretFile: './github-secret', events: ['ping', 'push'] },
    ],
    targets: [
      {
        name: 'alertmanager',
        type: 'alertmanager',
        address: `${alertmanagerUrl}/api/v2/alerts`,
        tokenFile: './am-token',
        retry: { initialInterval: '100ms', maxInterval: '1s' },
      },
      {
        name: 'reconcile',
        type: 'flux-receiver',
        address: 'http://127.0.0.1:9/',
        receiver: { name: 'github-webhook', namespace: 'flux-system' },
        tokenFile: './receiver-token',
      },
    ],
    routes: [
      {
        name: 'home-ops',
        source: 'flux',
        eventSeverity: 'error',
        eventSources: [
          { kind: 'Kustomization', name: '*', namespace: 'flux-system' },
          { kind: 'HelmRelease', name: '*', namespace: 'flux-system' },
        ],
        exclusionList: ['error.*lookup.*github', 'dial.*tcp.*timeout'],
        targets: ['alertmanager'],
      },
      { name: 'helm-only', source: 'flux', inclusionList: ['^Helm'], targets: ['alertmanager'] },
      { name: 'cluster-home', source: 'flux', match: { metadata: { cluster: '^home$' } }, targets: ['alertmanager'] },
      { name: 'push-main', source: 'github', events: ['push'], branches: ['main'], targets: ['reconcile'] },
    ],
  };
}

const EXPLAIN_FILES = {
  'flux-hmac': HMAC_KEY,
  'github-secret': 'github-webhook-secret-0123456789',
  'am-token': `${AM_TOKEN}\n`,
  'receiver-token': 'receiver-token-0123456789abcdef',
};

describe('fluxrelay explain', () => {
  let dir;
  let configFile;

  before(async () => {
    dir = await folderWith({ ...EXPLAIN_FILES, 'fluxrelay.yaml': `${toYaml(explainConfig('http://alertmanager.o11y:9093'))}\n` });
    configFile = path.join(dir, 'fluxrelay.yaml');
  });

  after(cleanup);

  // Runs explain on `event` (object or text) with --output json; returns {code, stdout, stderr, report}.
  async function explainJson(event, { source = 'flux', eventType } = {}) {
    const eventFile = path.join(dir, `event-${uniqueSuffix()}.json`);
    await fs.writeFile(eventFile, typeof event === 'string' ? event : JSON.stringify(event));
    const args = ['explain', '--config', configFile, '--source', source, '--output', 'json'];
    if (eventType) args.push('--event-type', eventType);
    const result = await runRelayCommand([...args, eventFile]);
    assert.equal(result.code, 0, result.stderr);
    return { ...result, report: JSON.parse(result.stdout) };
  }

  const routeOf = (report, name) => report.routes.find((route) => route.route === name);

  it('names the step and the reason that drops an event, route by route', async () => {
    const cases = [
      {
        what: 'eventSources',
        event: fluxEvent({ involvedObject: { kind: 'HelmRelease', namespace: 'default', name: 'podinfo' } }),
        route: 'home-ops',
        verdict: 'event_source',
        reason: 'no eventSources entry matches HelmRelease/default/podinfo',
      },
      {
        what: 'severity',
        event: fluxEvent({ severity: 'info', reason: 'ReconciliationSucceeded', message: 'Reconciliation finished in 2.31s' }),
        route: 'home-ops',
        verdict: 'severity',
        reason: 'route takes error events only; event severity is info',
      },
      {
        what: 'exclusion',
        event: fluxEvent({ message: 'dial tcp: lookup github.com: i/o timeout' }),
        route: 'home-ops',
        verdict: 'exclusion',
        reason: 'exclusionList pattern "dial.*tcp.*timeout" matched the message',
      },
      {
        what: 'inclusion',
        event: fluxEvent({ message: 'kustomize build failed' }),
        route: 'helm-only',
        verdict: 'inclusion',
        reason: 'no inclusionList pattern matched the message ("^Helm")',
      },
      {
        what: 'match',
        event: fluxEvent({ metadata: { cluster: 'staging' } }),
        route: 'cluster-home',
        verdict: 'match',
        reason: 'match metadata.cluster: "staging" does not match "^home$"',
      },
    ];
    for (const { what, event, route, verdict, reason } of cases) {
      const { report } = await explainJson(event);
      assert.deepEqual(report.routes.map((r) => r.route), ['home-ops', 'helm-only', 'cluster-home'], `${what}: the flux routes in config order`);
      const shown = routeOf(report, route);
      assert.equal(shown.matched, false, what);
      assert.equal(shown.verdict, verdict, what);
      assert.equal(shown.reason, reason, what);
      assert.deepEqual(shown.targets, [], what);
    }

    // The text form says the same.
    const eventFile = path.join(dir, 'excluded.json');
    await fs.writeFile(eventFile, JSON.stringify(fluxEvent({ message: 'dial tcp: lookup github.com: i/o timeout' })));
    const text = await runRelayCommand(['explain', '--config', configFile, '--source', 'flux', eventFile]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /route "home-ops": not matched \(exclusion\): exclusionList pattern "dial\.\*tcp\.\*timeout" matched the message/);
  });

  it("shows Flux's target rule and the GitHub steps", async () => {
    const { report } = await explainJson(fluxEvent({ severity: 'info', reason: 'ReconciliationSucceeded', message: 'Helm upgrade succeeded', metadata: { commit_status: 'update' } }));
    const target = routeOf(report, 'helm-only').targets[0];
    assert.equal(target.accepted, false);
    assert.equal(target.verdict, 'target_rule');
    assert.match(target.reason, /commit status updates \(metadata commit_status=update\) never go to alertmanager targets/);
    assert.deepEqual(target.requests, []);

    const branch = await explainJson(JSON.stringify({ ref: 'refs/heads/dev' }), { source: 'github' });
    assert.deepEqual(branch.report.routes.map((r) => r.route), ['push-main']);
    assert.equal(routeOf(branch.report, 'push-main').verdict, 'branch');

    const ping = await explainJson(JSON.stringify({ zen: 'Design for failure.' }), { source: 'github', eventType: 'ping' });
    assert.match(ping.report.sourceAnswer, /pong/);

    const push = await explainJson(JSON.stringify({ ref: 'refs/heads/main' }), { source: 'github' });
    const request = routeOf(push.report, 'push-main').targets[0].requests[0];
    assert.equal(request.url, 'http://127.0.0.1:9/hook/<redacted>');
    assert.deepEqual(request.headers.find((h) => h.name === 'X-Hub-Signature-256'), { name: 'X-Hub-Signature-256', value: 'sha256=<redacted>' });
    assert.equal(request.body, JSON.stringify({ ref: 'refs/heads/main' }));
  });

  it('exits 1 for an unreadable or invalid event or config, 2 for usage errors', async () => {
    const missing = await runRelayCommand(['explain', '--config', configFile, '--source', 'flux', path.join(dir, 'nope.json')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope\.json/);

    const badFile = path.join(dir, 'bad.json');
    await fs.writeFile(badFile, '{"severity":"error"}');
    const bad = await runRelayCommand(['explain', '--config', configFile, '--source', 'flux', badFile]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a Flux event: .*involvedObject/);

    const badConfig = path.join(dir, 'bad.yaml');
    await fs.writeFile(badConfig, 'sources: [{name: flux, type: flux, path: /x, bogus: 1}]\n');
    const config = await runRelayCommand(['explain', '--config', badConfig, '--source', 'flux', badFile]);
    assert.equal(config.code, 1);
    assert.match(config.stderr, /bad\.yaml:1:\d+: /);

    const unknownSource = await runRelayCommand(['explain', '--config', configFile, '--source', 'nope', badFile]);
    assert.equal(unknownSource.code, 2);
    assert.match(unknownSource.stderr, /no source "nope" \(sources: flux, github\)/);

    const noSource = await runRelayCommand(['explain', '--config', configFile, badFile]);
    assert.equal(noSource.code, 2);
    assert.match(noSource.stderr, /explain needs --source NAME/);
  });

  it('shows the exact request the relay then sends to Alertmanager, the Authorization header redacted', async () => {
    const am = await startAlertmanager();
    const proxy = await recordingProxy(am.url);
    try {
      const run = uniqueSuffix();
      const event = fluxEvent({
        involvedObject: { name: `apps-${run}` },
        reason: 'HealthCheckFailed',
        metadata: { run },
      });
      const relay = await startRelay(explainConfig(proxy.url), { files: EXPLAIN_FILES, hmacKey: HMAC_KEY });

      const eventFile = path.join(relay.dir, 'event.json');
      await fs.writeFile(eventFile, JSON.stringify(event));
      const explained = await runRelayCommand(['explain', '--config', relay.configFile, '--source', 'flux', '--output', 'json', eventFile]);
      assert.equal(explained.code, 0, explained.stderr);
      assert.ok(!explained.stdout.includes(AM_TOKEN), 'the token is never shown');
      const report = JSON.parse(explained.stdout);
      const home = routeOf(report, 'home-ops');
      assert.equal(home.matched, true);
      assert.match(home.dedup, /^mode flux, window 5m0s, key home-ops:[0-9a-f]{64}: .*live dedup state is not consulted/);
      const shown = home.targets[0].requests[0];
      assert.equal(shown.method, 'POST');
      assert.equal(shown.url, `${proxy.url}/api/v2/alerts`);
      assert.deepEqual(shown.headers.find((h) => h.name === 'Authorization'), { name: 'Authorization', value: 'Bearer <redacted>' });
      assert.equal(proxy.recorded.length, 0, 'explain sends nothing');

      const response = await postEvent(relay, '/flux/events', event);
      assert.equal(response.status, 202, response.text);
      await waitFor(async () => (await am.alerts({ run })).length === 1, { what: 'the alert in Alertmanager' });

      const sent = proxy.recorded[0];
      assert.equal(sent.method, shown.method);
      assert.equal(`${proxy.url}${sent.url}`, shown.url);
      assert.equal(sent.body, shown.body, 'the body explain showed is the body sent');
      const sentHeaders = [];
      for (let i = 0; i < sent.headers.length; i += 2) sentHeaders.push({ name: sent.headers[i], value: sent.headers[i + 1] });
      const redacted = sentHeaders.map((h) => (h.name.toLowerCase() === 'authorization' ? { ...h, value: 'Bearer <redacted>' } : h));
      assert.deepEqual(
        redacted.map((h) => `${h.name.toLowerCase()}: ${h.value}`).sort(),
        shown.headers.map((h) => `${h.name.toLowerCase()}: ${h.value}`).sort(),
        'the headers explain showed are the headers sent',
      );
      assert.equal(sentHeaders.find((h) => h.name.toLowerCase() === 'authorization').value, `Bearer ${AM_TOKEN}`);
      await relay.stop();
    } finally {
      await proxy.close();
    }
  });
  it('shows, byte for byte, the resolution and the commit status the relay sends, over the state in its spool', async () => {
    const am = await startAlertmanager();
    const alertmanager = await recordingProxy(am.url);
    const stand = await startGitHubStandIn({ token: GITHUB_TOKEN });
    const github = await recordingProxy(stand.url);
    try {
      const sha = stand.newCommit();
      const run = uniqueSuffix();
      const config = {
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [
          { name: 'alertmanager', type: 'alertmanager', address: `${alertmanager.url}/api/v2/alerts`, tokenFile: './am-token', resolve: true },
          // Any host but github.com is GitHub Enterprise: the API is at <address host>/api/v3.
          { name: 'github', type: 'github', address: `${github.url}/fluxcd/podinfo`, tokenFile: './github-token' },
        ],
        routes: [
          { name: 'alerts', source: 'flux', eventSeverity: 'error', dedup: { mode: 'none' }, targets: ['alertmanager'] },
          { name: 'statuses', source: 'flux', dedup: { mode: 'none' }, targets: ['github'] },
        ],
      };
      const relay = await startRelay(config, {
        files: { ...EXPLAIN_FILES, 'github-token': GITHUB_TOKEN },
        hmacKey: HMAC_KEY,
      });
      const failing = fluxEvent({
        involvedObject: { kind: 'Kustomization', name: `apps-${run}`, namespace: 'flux-system' },
        reason: 'HealthCheckFailed',
        message: 'Health check failed after 5m0s',
        metadata: { revision: `main@sha1:${sha}`, run },
      });
      assert.equal((await postEvent(relay, '/flux/events', failing)).status, 202);
      await waitFor(async () => (await am.alerts({ run })).length === 1 && stand.statusesFor(sha).length === 1, {
        what: 'the alert firing and the failure status',
      });

      // The spool as it stands before the recovery: what explain reads its state from.
      await relay.stop();
      await fs.cp(path.join(relay.dir, 'data'), path.join(relay.dir, 'before-recovery'), { recursive: true });
      await relay.restart();
      // As kustomize-controller sends them: the object is ready (which resolves), and the revision
      // applied (commit_status=update: only GitHub statuses take it).
      const recovered = recoveryEvent(failing);
      const applied = recoveryEvent(failing, { metadata: { ...failing.metadata, commit_status: 'update' } });
      for (const event of [recovered, applied]) assert.equal((await postEvent(relay, '/flux/events', event)).status, 202);
      // A restart also re-sends what is firing at once; the resolution is the request that resolves.
      const isResolution = (recorded) => JSON.parse(recorded.body).some((alert) => alert.status === 'resolved');
      await waitFor(async () => alertmanager.recorded.some(isResolution) && stand.statusesFor(sha).length === 2, {
        what: 'the resolution and the success status',
      });
      await relay.stop();

      const resolution = alertmanager.recorded.find(isResolution);
      const [resolved] = JSON.parse(resolution.body);
      const status = github.recorded.at(-1);
      assert.equal(JSON.parse(status.body).state, 'success');

      // The same config over the copy, explained at the time the relay sent the resolution.
      const configText = await fs.readFile(relay.configFile, 'utf8');
      const explainConfigFile = path.join(relay.dir, 'explain.yaml');
      await fs.writeFile(explainConfigFile, configText.replace('./data', './before-recovery'));
      const explainFromSpool = async (event, now) => {
        const eventFile = path.join(relay.dir, `event-${uniqueSuffix()}.json`);
        await fs.writeFile(eventFile, JSON.stringify(event));
        const explained = await runRelayCommand([
          'explain', '--config', explainConfigFile, '--source', 'flux', '--output', 'json',
          '--state-from-spool', '--now', now, eventFile,
        ], { cwd: relay.dir });
        assert.equal(explained.code, 0, explained.stderr);
        assert.ok(!explained.stdout.includes(GITHUB_TOKEN) && !explained.stdout.includes(AM_TOKEN), 'no token is shown');
        return JSON.parse(explained.stdout);
      };

      const alertTarget = routeOf(await explainFromSpool(recovered, resolved.endsAt), 'alerts').targets[0];
      assert.equal(alertTarget.stateFrom, 'spool');
      assert.equal(alertTarget.state.length, 1);
      assert.match(alertTarget.state[0].value, new RegExp(`apps-${run}`), 'the firing alert read from the spool');
      assert.equal(alertTarget.writes.length, 1);
      assert.equal(alertTarget.writes[0].key, 'alertmanager-firing:alertmanager');
      const written = Object.values(JSON.parse(alertTarget.writes[0].value));
      assert.ok(written.length >= 1 && written.every((object) => object.alerts.length === 0), 'the object recovered: nothing left firing');
      assertSame(alertTarget.requests, [resolution], alertmanager.url);

      const statusTarget = routeOf(await explainFromSpool(applied, resolved.endsAt), 'statuses').targets[0];
      assert.equal(statusTarget.stateFrom, 'spool');
      const known = JSON.parse(statusTarget.state[0].value);
      assert.deepEqual([known.state, known.description], ['failure', 'health check failed'], 'the last status delivered');
      assertSame(statusTarget.requests, [status], github.url);
    } finally {
      await alertmanager.close();
      await github.close();
      await stand.close();
    }
  });

  it('shows, byte for byte, the steps a github-deployment target takes: list, create, status', async () => {
    const stand = await startGitHubStandIn({ token: GITHUB_TOKEN });
    const github = await recordingProxy(stand.url);
    try {
      const sha = stand.newCommit();
      const config = {
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [{ name: 'deploys', type: 'github-deployment', address: `${github.url}/fluxcd/podinfo`, environment: 'home/{name}', tokenFile: './github-token' }],
        routes: [{ name: 'rollouts', source: 'flux', dedup: { mode: 'none' }, targets: ['deploys'] }],
      };
      const relay = await startRelay(config, { files: { ...EXPLAIN_FILES, 'github-token': GITHUB_TOKEN }, hmacKey: HMAC_KEY });
      const event = fluxEvent({
        involvedObject: { kind: 'Kustomization', name: `apps-${uniqueSuffix()}`, namespace: 'flux-system' },
        severity: 'info',
        reason: 'Progressing',
        message: 'Deployment/default/podinfo configured',
        metadata: { revision: `main@sha1:${sha}` },
      });
      const eventFile = path.join(relay.dir, 'event.json');
      await fs.writeFile(eventFile, JSON.stringify(event));
      const explained = await runRelayCommand(['explain', '--config', relay.configFile, '--source', 'flux', '--output', 'json', eventFile]);
      assert.equal(explained.code, 0, explained.stderr);
      assert.ok(!explained.stdout.includes(GITHUB_TOKEN), 'the token is never shown');
      const target = routeOf(JSON.parse(explained.stdout), 'rollouts').targets[0];
      assert.ok(target.notes.some((note) => /made-up answer to step 2/.test(note)), target.notes.join('; '));

      assert.equal((await postEvent(relay, '/flux/events', event)).status, 202);
      await waitFor(() => stand.deploymentsFor(sha)[0]?.statuses.length === 1, { what: 'the in_progress status' });
      await relay.stop();
      // The stand-in's first Deployment has id 1, the id explain made up.
      assert.equal(stand.deploymentsFor(sha)[0].id, 1);
      assertSame(target.requests, github.recorded, github.url);
      assert.deepEqual(stand.violations, []);
    } finally {
      await github.close();
      await stand.close();
    }
  });
});

// Explain's requests against those recorded on the wire: the same method, URL, body and headers,
// the credentials compared redacted.
function assertSame(shown, recorded, origin) {
  assert.equal(shown.length, recorded.length);
  shown.forEach((request, i) => {
    const sent = recorded[i];
    assert.equal(request.method, sent.method);
    assert.equal(request.url, `${origin}${sent.url}`);
    assert.equal(request.body, sent.body, 'the body explain showed is the body sent, byte for byte');
    const sentHeaders = [];
    for (let at = 0; at < sent.headers.length; at += 2) {
      const [name, value] = [sent.headers[at], sent.headers[at + 1]];
      sentHeaders.push(`${name.toLowerCase()}: ${name.toLowerCase() === 'authorization' ? value.replace(/ .*/, ' <redacted>') : value}`);
    }
    assert.deepEqual(
      request.headers.map((h) => `${h.name.toLowerCase()}: ${h.value}`).sort(),
      sentHeaders.sort(),
      'the headers explain showed are the headers sent',
    );
  });
}

// ---------------------------------------------------------------------------------------------

describe('fluxrelay import-flux on the home-ops manifests', () => {
  let am;
  let relay;
  let imported;
  const fixtureFiles = ['kustomization.yaml', 'alertmanager.yaml', 'github.yaml', 'receiver.yaml'].map((f) => path.join(FIXTURES, f));
  const secretFiles = {
    'secrets/flux-hmac': HMAC_KEY,
    'secrets/github-token-secret/token': 'ghp_notARealToken0123456789',
    'secrets/github-webhook-token-secret/token': 'webhook-token-0123456789',
  };

  before(async () => {
    imported = await runRelayCommand(['import-flux', ...fixtureFiles]);
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('prints a config check-config accepts, and reports what it could not map', async () => {
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stderr, /warning: 1 object of kind ExternalSecret ignored/);
    assert.match(imported.stderr, /warning: Provider flux-system\/github \(.*github\.yaml\): commit statuses get the context/);
    assert.match(imported.stdout, /# WARNING: commit statuses get the context/);
    for (const file of Object.keys(secretFiles)) assert.ok(imported.stdout.includes(`#   ./${file}:`), `the header lists ${file}`);
    // Flux defaults an eventSources namespace to the Alert's, which the kustomization sets.
    assert.match(imported.stdout, /- \{kind: HelmRelease, name: "\*", namespace: flux-system\}/);
    assert.match(imported.stdout, /receiver: \{name: github-webhook, namespace: flux-system\}/);

    const dir = await folderWith({ ...secretFiles, 'fluxrelay.yaml': imported.stdout });
    const check = await runRelayCommand(['check-config', path.join(dir, 'fluxrelay.yaml')]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
  });

  it("routes events to Alertmanager exactly as Flux's home-ops Alert does", async () => {
    am = await startAlertmanager();
    // Only the Alertmanager address changes (and the GitHub one, so that no test reaches the
    // internet); listeners and storage go to this test's ports and folder.
    const replacements = [
      ['http://alertmanager-operated.observability.svc.cluster.local:9093/api/v2/alerts/', `${am.url}/api/v2/alerts/`],
      ['https://github.com/onedr0p/home-ops', `http://127.0.0.1:${await freePort()}/onedr0p/home-ops`],
      ['0.0.0.0:8080', `127.0.0.1:${await freePort()}`],
      ['127.0.0.1:9090', `127.0.0.1:${await freePort()}`],
      ['./fluxrelay-data', './data'],
    ];
    let text = imported.stdout;
    for (const [from, to] of replacements) {
      assert.ok(text.includes(from), `the imported config contains ${from}`);
      text = text.replaceAll(from, to);
    }
    relay = await startRelay(text, { files: secretFiles, hmacKey: HMAC_KEY });

    const run = uniqueSuffix();
    const event = (name, fields) => fluxEvent({ ...fields, involvedObject: { namespace: 'flux-system', ...fields.involvedObject, name: `${name}-${run}` }, metadata: { ...fields.metadata, run } });
    const source = (kind, apiVersion) => ({ kind, apiVersion });

    // What Flux's Alert drops, and why.
    const dropped = {
      // eventSources without namespace: the Alert's namespace (flux-system), not any
      'error in another namespace': event('grafana', {
        involvedObject: { ...source('HelmRelease', 'helm.toolkit.fluxcd.io/v2'), namespace: 'observability' },
        reason: 'UpgradeFailed',
        reportingController: 'helm-controller',
        message: 'Helm upgrade failed for release observability/grafana with chart grafana@8.5.1: context deadline exceeded',
      }),
      // eventSeverity: error
      'info event': event('cluster-apps', {
        involvedObject: source('Kustomization', 'kustomize.toolkit.fluxcd.io/v1'),
        severity: 'info',
        reason: 'ReconciliationSucceeded',
        message: 'Reconciliation finished in 2.31s, next run in 30m0s',
      }),
      // eventSources: kind not listed
      'unlisted kind': event('backups', {
        involvedObject: source('Bucket', 'source.toolkit.fluxcd.io/v1'),
        reason: 'BucketOperationFailed',
        reportingController: 'source-controller',
        message: 'bucket does not exist',
      }),
      // exclusionList
      'error.*lookup.*github': event('bjw-s', {
        involvedObject: source('HelmRepository', 'source.toolkit.fluxcd.io/v1'),
        reason: 'Failed',
        reportingController: 'source-controller',
        message: 'failed to fetch Helm repository index: error getting index: Get "https://bjw-s.github.io/helm-charts/index.yaml": dial tcp: lookup bjw-s.github.io on 10.43.0.10:53: server misbehaving',
      }),
      'dial.*tcp.*timeout': event('home-kubernetes', {
        involvedObject: source('GitRepository', 'source.toolkit.fluxcd.io/v1'),
        reason: 'GitOperationFailed',
        reportingController: 'source-controller',
        message: "failed to checkout and determine revision: unable to clone 'https://github.com/onedr0p/home-ops': dial tcp: lookup github.com: i/o timeout",
      }),
      'dial.*tcp.*unreachable': event('cluster-apps-oci', {
        involvedObject: source('OCIRepository', 'source.toolkit.fluxcd.io/v1beta2'),
        reason: 'OCIArtifactPullFailed',
        reportingController: 'source-controller',
        message: 'failed to pull artifact: Get "https://ghcr.io/v2/": dial tcp 10.0.0.1:443: connect: network is unreachable',
      }),
      'waiting.*socket': event('flux-socket', {
        involvedObject: source('FluxInstance', 'fluxcd.controlplane.io/v1'),
        reason: 'ReconciliationFailed',
        reportingController: 'flux-operator',
        message: 'failed to apply manifests: Internal error occurred: waiting for socket /run/k3s/containerd/containerd.sock to be ready',
      }),
      // Flux never sends commit status updates to an alertmanager Provider
      'commit status update': event('cluster-apps-status', {
        involvedObject: source('Kustomization', 'kustomize.toolkit.fluxcd.io/v1'),
        reason: 'ReconciliationFailed',
        message: 'kustomize build failed: accumulating resources',
        metadata: { commit_status: 'update' },
      }),
    };
    const forwarded = {
      'health check failure': event('cluster-apps-immich', {
        involvedObject: source('Kustomization', 'kustomize.toolkit.fluxcd.io/v1'),
        reason: 'HealthCheckFailed',
        message: "Health check failed after 5m0s: timeout waiting for: [HelmRelease/default/immich status: 'Failed']",
      }),
      'helm install failure': event('cilium', {
        involvedObject: source('HelmRelease', 'helm.toolkit.fluxcd.io/v2'),
        reason: 'InstallFailed',
        reportingController: 'helm-controller',
        message: 'Helm install failed for release flux-system/cilium with chart cilium@1.16.1: context deadline exceeded',
      }),
      'git authentication failure': event('flux-system', {
        involvedObject: source('GitRepository', 'source.toolkit.fluxcd.io/v1'),
        reason: 'GitOperationFailed',
        reportingController: 'source-controller',
        message: "failed to checkout and determine revision: unable to clone 'ssh://git@github.com/onedr0p/home-ops': ssh: handshake failed: ssh: unable to authenticate",
      }),
      'flux instance failure': event('flux', {
        involvedObject: source('FluxInstance', 'fluxcd.controlplane.io/v1'),
        reason: 'ReconciliationFailed',
        reportingController: 'flux-operator',
        message: 'failed to build manifests: distribution v2.7.0 not found',
      }),
    };

    // The dropped ones first: once the forwarded ones (posted after) are in Alertmanager, a
    // dropped one that were going to be sent would have been sent too.
    for (const [what, body] of [...Object.entries(dropped), ...Object.entries(forwarded)]) {
      const response = await postEvent(relay, '/flux/events', body);
      assert.equal(response.status, 202, `${what}: ${response.text}`);
    }
    const expectedNames = Object.values(forwarded).map((body) => body.involvedObject.name).sort();
    await waitFor(async () => {
      const names = (await am.alerts({ run })).map((alert) => alert.labels.name);
      return expectedNames.every((name) => names.includes(name));
    }, { what: `alerts for ${expectedNames.join(', ')}` });

    const alerts = await am.alerts({ run });
    assert.deepEqual(alerts.map((alert) => alert.labels.name).sort(), expectedNames, "only what Flux's Alert forwards became alerts");
    for (const body of Object.values(forwarded)) {
      const alert = alerts.find((candidate) => candidate.labels.name === body.involvedObject.name);
      assert.deepEqual(alert.labels, expectedFluxLabels(body));
    }

    // explain on the imported config says why the first one was dropped.
    const eventFile = path.join(relay.dir, 'dropped.json');
    await fs.writeFile(eventFile, JSON.stringify(dropped['error in another namespace']));
    const explained = await runRelayCommand(['explain', '--config', relay.configFile, '--source', 'flux', eventFile]);
    assert.equal(explained.code, 0, explained.stderr);
    assert.match(explained.stdout, new RegExp(`route "alertmanager": not matched \\(event_source\\): no eventSources entry matches HelmRelease/observability/grafana-${run}`));
  });
});
