// Targets behind a forward proxy, a real tinyproxy: http requests go to it whole, https ones
// through a CONNECT tunnel with the target's own TLS checks, and proxy credentials come from
// proxyCredentialsFile, are refused clearly when wrong, and never reach the log.
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { baseConfig, cleanup, fluxEvent, makeTempDir, postEvent, startAlertmanager, startRelay, startTinyproxy, uniqueSuffix, waitFor } from './harness.mjs';

const execFileAsync = promisify(execFile);

const PROXY_USER = 'relay';
const PROXY_PASSWORD = `pr0xy-${uniqueSuffix()}`;
const WRONG_PASSWORD = `wrong-${uniqueSuffix()}`;

// A CA and a certificate it signed for localhost, made with the openssl CLI: {ca, cert, key} PEM.
async function makeServerCertificate() {
  const dir = await makeTempDir('fluxrelay-it-proxy-pki-');
  const run = (...args) => execFileAsync('openssl', args, { cwd: dir });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await fsp.writeFile(
    path.join(dir, 'openssl.cnf'),
    '[req]\ndistinguished_name = dn\n[dn]\n[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign\n' +
      '[server]\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n',
  );
  await run('req', '-x509', ...key, '-config', 'openssl.cnf', '-extensions', 'ca', '-subj', '/CN=proxy test CA', '-days', '2', '-keyout', 'ca.key', '-out', 'ca.crt');
  await run('req', '-new', ...key, '-config', 'openssl.cnf', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  await run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '4242', '-days', '2', '-extfile', 'openssl.cnf', '-extensions', 'server', '-out', 'server.crt');
  const read = (name) => fsp.readFile(path.join(dir, name), 'utf8');
  return { ca: await read('ca.crt'), cert: await read('server.crt'), key: await read('server.key') };
}

// The retry warning the dispatcher logs for a target, once one matches `pattern`.
function retryWarning(relay, target, pattern) {
  return relay.logLines().find((line) => line.level === 'warning' && line.msg?.startsWith(`target ${target}:`) && pattern.test(line.msg));
}

async function sendEvent(relay, name) {
  const event = fluxEvent({ involvedObject: { name }, message: `through the proxy ${name}` });
  const response = await postEvent(relay, '/flux/events', event);
  assert.equal(response.status, 202, response.text);
  return event;
}

const alertArrives = (am, name) => waitFor(async () => (await am.alerts({ name })).length === 1, { what: `the alert for ${name} in Alertmanager` });

const credentialsFile = (password) => ({ 'proxy-credentials': `${PROXY_USER}:${password}\n` });
const proxyAuth = { user: PROXY_USER, password: PROXY_PASSWORD };

let pki;
before(async () => {
  pki = await makeServerCertificate();
});
after(cleanup);

describe('an http target through a proxy', () => {
  let am;
  let proxy;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    proxy = await startTinyproxy({ basicAuth: proxyAuth });
    const target = { proxy: proxy.url, proxyCredentialsFile: './proxy-credentials' };
    relay = await startRelay(baseConfig({ alertmanagerUrl: am.url, target }), { files: credentialsFile(PROXY_PASSWORD) });
  });

  after(async () => {
    if (relay) await relay.stop();
  });

  it('is sent to the proxy as an absolute-form request, which delivers it to Alertmanager', async () => {
    const name = `proxied-${uniqueSuffix()}`;
    await sendEvent(relay, name);
    await alertArrives(am, name);
    const requestLine = `POST ${am.url}/api/v2/alerts HTTP/1.1`;
    assert.ok(proxy.log().includes(`: ${requestLine}`), `tinyproxy logged no "${requestLine}":\n${proxy.log()}`);
  });
});

describe('an https target through a CONNECT tunnel', () => {
  let am;
  let proxy;
  let relay;
  let port;

  before(async () => {
    am = await startAlertmanager({ tls: pki });
    port = new URL(am.url).port;
    proxy = await startTinyproxy({ basicAuth: proxyAuth, connectPorts: [port] });
    const through = { proxy: proxy.url, proxyCredentialsFile: './proxy-credentials' };
    const config = baseConfig({ alertmanagerUrl: am.url, target: { ...through, caFile: './ca.crt' } });
    // The same server without its CA: the tunnel must not weaken the certificate check.
    config.targets.push({ ...config.targets[0], name: 'untrusted', caFile: undefined, retry: { maxAttempts: 2, initialInterval: '100ms', maxInterval: '200ms' } });
    config.routes[0].targets.push('untrusted');
    relay = await startRelay(config, { files: { 'ca.crt': pki.ca, ...credentialsFile(PROXY_PASSWORD) } });
  });

  after(async () => {
    if (relay) await relay.stop();
  });

  it('tunnels to Alertmanager, verifying its certificate with the target caFile', async () => {
    const name = `tunnelled-${uniqueSuffix()}`;
    await sendEvent(relay, name);
    await alertArrives(am, name);
    assert.ok(proxy.log().includes(`: CONNECT localhost:${port} HTTP/1.1`), `tinyproxy logged no CONNECT:\n${proxy.log()}`);

    const letters = await waitFor(async () => {
      const list = await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json();
      return list.length === 1 && list;
    }, { what: 'the untrusted target giving up' });
    assert.equal(letters[0].target, 'untrusted');
    assert.match(letters[0].reason, /certificate verify failed.*unable to get local issuer certificate/);
  });
});

// tinyproxy answers missing credentials 407, wrong ones 401 (and may reset the connection with the
// request body unread): wrong ones are tried here through CONNECT, where any refusal is the proxy's.
describe('proxy credentials', () => {
  let am;
  let httpAm;
  let proxy;
  let relay;

  before(async () => {
    am = await startAlertmanager({ tls: pki });
    httpAm = await startAlertmanager();
    proxy = await startTinyproxy({ basicAuth: proxyAuth, connectPorts: [new URL(am.url).port] });
    const config = baseConfig({ alertmanagerUrl: am.url, target: { proxy: proxy.url, proxyCredentialsFile: './proxy-credentials', caFile: './ca.crt' } });
    config.targets.push({ ...config.targets[0], name: 'anonymous', address: `${httpAm.url}/api/v2/alerts`, proxyCredentialsFile: undefined, caFile: undefined });
    config.routes[0].targets.push('anonymous');
    relay = await startRelay(config, { files: { 'ca.crt': pki.ca, ...credentialsFile(WRONG_PASSWORD) } });
  });

  after(async () => {
    if (relay) await relay.stop();
  });

  it('keeps retrying while the proxy refuses them, and delivers once they are right', async () => {
    const name = `credentials-${uniqueSuffix()}`;
    await sendEvent(relay, name);
    const proxyName = new URL(proxy.url).host;
    const tunnel = `CONNECT localhost:${new URL(am.url).port}: proxy ${proxyName} answered 401 Unauthorized`;
    await waitFor(() => retryWarning(relay, 'alertmanager', new RegExp(tunnel)), { what: 'the refused credentials logged' });
    await waitFor(() => retryWarning(relay, 'anonymous', new RegExp(`proxy ${proxyName} requires authentication \\(407\\): set proxyCredentialsFile`)), { what: 'the missing credentials logged' });
    assert.equal((await am.alerts({ name })).length, 0);
    assert.equal((await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json()).length, 0, 'nothing given up on');

    await fsp.writeFile(path.join(relay.dir, 'proxy-credentials'), credentialsFile(PROXY_PASSWORD)['proxy-credentials'], { mode: 0o600 });
    relay.process.kill('SIGHUP');
    await alertArrives(am, name);
    assert.equal((await httpAm.alerts({ name })).length, 0, 'no credentials, no delivery');
  });

  it('never logs a password, plain or encoded', () => {
    const log = relay.log();
    for (const secret of [PROXY_PASSWORD, WRONG_PASSWORD]) {
      assert.ok(!log.includes(secret), 'a proxy password is in the relay log');
      assert.ok(!log.includes(Buffer.from(`${PROXY_USER}:${secret}`).toString('base64')), 'an encoded password is in the relay log');
    }
  });
});
