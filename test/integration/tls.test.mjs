// TLS in and out: HTTPS ingest and admin listeners (TLS 1.2+ with modern ciphers, client
// certificates, certificate rotation without a restart) and verified HTTPS to targets. The test
// CA and every certificate are made here with the openssl CLI.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fsp from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { cleanup, fluxEvent, freePort, makeTempDir, runRelayCommand, signFlux, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// A test PKI: a CA, and a second one nobody trusts.

const OPENSSL_CONFIG = `# Written by the fluxrelay TLS integration tests.
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[wronghost]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
[client]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
`;

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

// Makes every certificate the tests need in `dir`; returns name → {cert, key, serial} (PEM text,
// serial as upper-case hex, the way node prints it).
async function makePki(dir) {
  const run = (...args) => execFileAsync('openssl', args, { cwd: dir });
  await fsp.writeFile(path.join(dir, 'openssl.cnf'), OPENSSL_CONFIG);
  let serial = 0x1000 + Math.floor(Math.random() * 0x1000);
  const names = [];

  const selfSigned = async (name, cn, extensions) => {
    await run('req', '-x509', ...EC_KEY, '-config', 'openssl.cnf', '-extensions', extensions, '-subj', `/CN=${cn}`, '-days', '2', '-keyout', `${name}.key`, '-out', `${name}.crt`);
    names.push(name);
  };
  const issued = async (name, cn, { ca = 'ca', extensions = 'server', days = '2' } = {}) => {
    serial += 1;
    await run('req', '-new', ...EC_KEY, '-config', 'openssl.cnf', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    // `-days -1`: valid until yesterday, i.e. expired.
    await run('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(serial), '-days', days, '-extfile', 'openssl.cnf', '-extensions', extensions, '-out', `${name}.crt`);
    names.push(name);
  };

  await selfSigned('ca', 'fluxrelay test CA', 'ca');
  await selfSigned('otherca', 'some other CA', 'ca');
  await issued('server', 'localhost');
  await issued('server2', 'localhost');
  await issued('expired', 'localhost', { days: '-1' });
  await issued('wronghost', 'wrong.example', { extensions: 'wronghost' });
  await selfSigned('selfsigned', 'localhost', 'server');
  await issued('client', 'flux-notification-controller', { extensions: 'client' });
  await issued('rogueclient', 'flux-notification-controller', { ca: 'otherca', extensions: 'client' });

  const pki = {};
  for (const name of names) {
    const cert = await fsp.readFile(path.join(dir, `${name}.crt`), 'utf8');
    const key = await fsp.readFile(path.join(dir, `${name}.key`), 'utf8');
    pki[name] = { cert, key, serial: new X509Certificate(cert).serialNumber.toUpperCase() };
  }
  return pki;
}

// ---------------------------------------------------------------------------------------------
// Clients.

// One HTTPS request on a fresh connection. Resolves {status, text, json, serial, protocol};
// rejects on a TLS or connection error.
function httpsRequest(url, { method = 'GET', headers = {}, body, ...tlsOptions } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, agent: false, timeout: 10_000, ...tlsOptions }, (res) => {
      const serial = res.socket.getPeerCertificate().serialNumber?.toUpperCase();
      const protocol = res.socket.getProtocol();
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, text, json, serial, protocol });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// POSTs a signed Flux event over HTTPS.
function postEventTls(url, event, key, tlsOptions) {
  const body = JSON.stringify(event);
  return httpsRequest(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Signature': signFlux(body, key) },
    body,
    ...tlsOptions,
  });
}

// A bare TLS handshake. Resolves {ok: true, protocol, cipher, serial} or {ok: false, error}.
function handshake(port, options) {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
    socket.setTimeout(10_000, () => socket.destroy(new Error('handshake timed out')));
    socket.once('secureConnect', () => {
      const result = { ok: true, protocol: socket.getProtocol(), cipher: socket.getCipher().name, serial: socket.getPeerCertificate().serialNumber.toUpperCase() };
      socket.end();
      resolve(result);
    });
    socket.once('error', (error) => resolve({ ok: false, error: error.message }));
  });
}

const relayFiles = (pki, names) => Object.fromEntries(names.flatMap((name) => [[`pki/${name}.crt`, pki[name].cert], [`pki/${name}.key`, pki[name].key]]));

let pki;
before(async () => {
  pki = await makePki(await makeTempDir('fluxrelay-it-pki-'));
});
after(cleanup);

// ---------------------------------------------------------------------------------------------

describe('HTTPS ingest and admin listeners', () => {
  let am;
  let relay;
  let ingestUrl;
  let adminUrl;

  before(async () => {
    am = await startAlertmanager();
    const ingestPort = await freePort();
    const adminPort = await freePort();
    ingestUrl = `https://127.0.0.1:${ingestPort}`;
    adminUrl = `https://127.0.0.1:${adminPort}`;
    const listenerTls = { certFile: './pki/server.crt', keyFile: './pki/server.key' };
    relay = await startRelay(
      {
        server: { listen: `127.0.0.1:${ingestPort}`, tls: listenerTls },
        admin: { listen: `127.0.0.1:${adminPort}`, tls: listenerTls },
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [{ name: 'alertmanager', type: 'alertmanager', address: `${am.url}/api/v2/alerts`, retry: { initialInterval: '100ms', maxInterval: '1s' } }],
        routes: [{ name: 'all', source: 'flux', targets: ['alertmanager'] }],
      },
      {
        files: relayFiles(pki, ['server']),
        ready: async () => (await httpsRequest(`${adminUrl}/readyz`, { ca: pki.ca.cert }).catch(() => ({}))).status === 200,
      },
    );
  });

  after(async () => {
    if (relay) await relay.stop();
  });

  it('accepts a signed Flux event over HTTPS and delivers it to Alertmanager', async () => {
    const name = `apps-tls-${uniqueSuffix()}`;
    const event = fluxEvent({ involvedObject: { name }, reason: 'ReconciliationFailed', message: `over TLS ${name}` });
    const response = await postEventTls(`${ingestUrl}/flux/events`, event, relay.hmacKey, { ca: pki.ca.cert });
    assert.equal(response.status, 202, response.text);
    assert.equal(response.json?.status, 'accepted');
    assert.equal(response.serial, pki.server.serial);

    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ name });
      return alerts.length > 0 && alerts;
    }, { what: `alert for ${name}` });
    assert.equal(alert.labels.alertname, 'FluxKustomizationReconciliationfailed');
    assert.equal(alert.annotations.message, event.message);
  });

  it('serves the admin API over HTTPS only', async () => {
    const health = await httpsRequest(`${adminUrl}/healthz`, { ca: pki.ca.cert });
    assert.equal(health.status, 200);
    const metrics = await httpsRequest(`${adminUrl}/metrics`, { ca: pki.ca.cert });
    assert.match(metrics.text, /fluxrelay_events_received_total\{source="flux"\} [1-9]/);
    // Plain HTTP on a TLS port gets no HTTP answer.
    await assert.rejects(fetch(`http://127.0.0.1:${new URL(adminUrl).port}/healthz`, { signal: AbortSignal.timeout(10_000) }));
    // The dead-letter commands follow the admin listener to HTTPS.
    const listed = await runRelayCommand(['deadletters', 'list', '--config', relay.configFile]);
    assert.equal(listed.code, 0, listed.stderr);
  });

  it('is not trusted without the CA, and names localhost and 127.0.0.1', async () => {
    await assert.rejects(httpsRequest(`${ingestUrl}/healthz`), /unable to verify the first certificate|unable to get local issuer certificate/);
    const byName = await httpsRequest(`https://localhost:${new URL(ingestUrl).port}/healthz`, { ca: pki.ca.cert });
    assert.equal(byName.status, 200);
  });

  it('speaks TLS 1.3 and TLS 1.2 with ECDHE and AEAD ciphers only', async () => {
    const modern = await handshake(new URL(ingestUrl).port, { ca: pki.ca.cert });
    assert.deepEqual([modern.ok, modern.protocol], [true, 'TLSv1.3'], modern.error);

    const tls12 = await handshake(new URL(ingestUrl).port, { ca: pki.ca.cert, maxVersion: 'TLSv1.2' });
    assert.equal(tls12.ok, true, tls12.error);
    assert.equal(tls12.protocol, 'TLSv1.2');
    assert.match(tls12.cipher, /^ECDHE-ECDSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/);

    // CBC without AEAD, and RSA key exchange, are refused in TLS 1.2.
    const cbc = await handshake(new URL(ingestUrl).port, { ca: pki.ca.cert, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384' });
    assert.equal(cbc.ok, false);
    assert.match(cbc.error, /handshake failure/i);
  });

  it('refuses TLS 1.1 and 1.0', async () => {
    for (const version of ['TLSv1.1', 'TLSv1']) {
      // Security level 0: this client's OpenSSL would not even offer these versions otherwise, and
      // the refusal must come from the relay.
      const old = await handshake(new URL(ingestUrl).port, { ca: pki.ca.cert, minVersion: version, maxVersion: version, ciphers: 'DEFAULT:@SECLEVEL=0' });
      assert.equal(old.ok, false, `${version} was accepted`);
      assert.match(old.error, /protocol version|unsupported protocol/i, version);
    }
  });
});

describe('client certificates (server.tls.clientCAFile)', () => {
  let relay;
  let ingestUrl;

  before(async () => {
    const ingestPort = await freePort();
    ingestUrl = `https://127.0.0.1:${ingestPort}`;
    relay = await startRelay(
      {
        server: { listen: `127.0.0.1:${ingestPort}`, tls: { certFile: './pki/server.crt', keyFile: './pki/server.key', clientCAFile: './pki/ca.crt' } },
        admin: {},
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [{ name: 'nowhere', type: 'alertmanager', address: 'http://127.0.0.1:9/api/v2/alerts' }],
        routes: [{ name: 'all', source: 'flux', targets: ['nowhere'] }],
      },
      { files: { ...relayFiles(pki, ['server']), 'pki/ca.crt': pki.ca.cert } },
    );
  });

  after(async () => {
    if (relay) await relay.stop();
  });

  it('accepts a client with a certificate the CA signed', async () => {
    const event = fluxEvent({ involvedObject: { name: `mtls-${uniqueSuffix()}` } });
    const response = await postEventTls(`${ingestUrl}/flux/events`, event, relay.hmacKey, { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    assert.equal(response.status, 202, response.text);
  });

  it('refuses a client without a certificate at the handshake', async () => {
    const event = fluxEvent({ involvedObject: { name: `mtls-${uniqueSuffix()}` } });
    await assert.rejects(postEventTls(`${ingestUrl}/flux/events`, event, relay.hmacKey, { ca: pki.ca.cert }), /certificate required|handshake failure|socket hang up|ECONNRESET/i);
  });

  it('refuses a client whose certificate another CA signed', async () => {
    const event = fluxEvent({ involvedObject: { name: `mtls-${uniqueSuffix()}` } });
    await assert.rejects(
      postEventTls(`${ingestUrl}/flux/events`, event, relay.hmacKey, { ca: pki.ca.cert, cert: pki.rogueclient.cert, key: pki.rogueclient.key }),
      /unknown ca|certificate verify failed|socket hang up|ECONNRESET/i,
    );
    // Neither refused client got an event in: only the accepted one was received.
    const metrics = await (await fetch(`${relay.adminUrl}/metrics`)).text();
    assert.match(metrics, /fluxrelay_events_received_total\{source="flux"\} 1\b/);
  });
});

describe('certificate rotation', () => {
  let relay;
  let port;

  before(async () => {
    port = await freePort();
    relay = await startRelay(
      {
        server: { listen: `127.0.0.1:${port}`, tls: { certFile: './tls/tls.crt', keyFile: './tls/tls.key' } },
        admin: {},
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets: [{ name: 'nowhere', type: 'alertmanager', address: 'http://127.0.0.1:9/api/v2/alerts' }],
        routes: [{ name: 'all', source: 'flux', targets: ['nowhere'] }],
      },
      { files: { 'tls/tls.crt': pki.server.cert, 'tls/tls.key': pki.server.key } },
    );
  });

  after(async () => {
    if (relay) await relay.stop();
  });

  // As a Secret volume or cert-manager does: new content under a temp name, renamed over.
  const replace = async (name, content) => {
    const file = path.join(relay.dir, 'tls', name);
    await fsp.writeFile(`${file}.new`, content, { mode: 0o600 });
    await fsp.rename(`${file}.new`, file);
  };

  it('serves new certificates to new connections without a restart', async () => {
    const first = await handshake(port, { ca: pki.ca.cert });
    assert.equal(first.serial, pki.server.serial, first.error);

    // A broken certificate file is refused, logged, and the old certificate keeps serving.
    await replace('tls.crt', '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    await waitFor(() => relay.logLines().some((line) => line.level === 'error' && /ingest: TLS files cannot be used/.test(line.msg)), { what: 'the broken certificate logged' });
    const during = await handshake(port, { ca: pki.ca.cert });
    assert.equal(during.serial, pki.server.serial, during.error);

    await replace('tls.key', pki.server2.key);
    await replace('tls.crt', pki.server2.cert);
    const rotated = await waitFor(async () => {
      const result = await handshake(port, { ca: pki.ca.cert });
      return result.serial === pki.server2.serial && result;
    }, { what: 'the new certificate served' });
    assert.equal(rotated.ok, true);

    const event = fluxEvent({ involvedObject: { name: `rotated-${uniqueSuffix()}` } });
    const response = await postEventTls(`https://127.0.0.1:${port}/flux/events`, event, relay.hmacKey, { ca: pki.ca.cert });
    assert.equal(response.status, 202, response.text);
    assert.equal(response.serial, pki.server2.serial);
    assert.ok(relay.logLines().some((line) => line.level === 'info' && /ingest: TLS certificate changed/.test(line.msg)));
  });
});

// ---------------------------------------------------------------------------------------------
// Outbound: HTTPS targets. Each stand-in is an HTTPS server that takes what Alertmanager takes
// (POST /api/v2/alerts, a JSON array) and presents the certificate under test.

async function startTlsTarget(name, { requestCert = false } = {}) {
  const received = [];
  const options = { key: pki[name].key, cert: pki[name].cert };
  if (requestCert) Object.assign(options, { requestCert: true, rejectUnauthorized: true, ca: pki.ca.cert });
  const server = https.createServer(options, (req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      let alerts = null;
      try {
        alerts = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        // answered 400 below
      }
      const contentType = req.headers['content-type'] || '';
      if (req.method !== 'POST' || req.url !== '/api/v2/alerts' || !contentType.startsWith('application/json') || !Array.isArray(alerts)) {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end('{"code":400,"message":"bad request"}');
        return;
      }
      received.push({ alerts, servername: req.socket.servername, client: req.socket.getPeerCertificate()?.subject?.CN });
      res.writeHead(200);
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port, received };
}

describe('HTTPS targets', () => {
  const stand = {};
  let relay;

  before(async () => {
    stand.good = await startTlsTarget('server');
    stand.noca = await startTlsTarget('server');
    stand.mutual = await startTlsTarget('server', { requestCert: true });
    stand.expired = await startTlsTarget('expired');
    stand.selfsigned = await startTlsTarget('selfsigned');
    stand.wronghost = await startTlsTarget('wronghost');
    stand.insecure = await startTlsTarget('selfsigned');
    const target = (name, host, extra = {}) => ({
      name,
      type: 'alertmanager',
      address: `https://${host}:${stand[name].port}/api/v2/alerts`,
      timeout: '5s',
      retry: { maxAttempts: 2, initialInterval: '100ms', maxInterval: '200ms' },
      ...extra,
    });
    const targets = [
      target('good', 'localhost', { caFile: './pki/ca.crt' }),
      target('noca', 'localhost'),
      target('mutual', '127.0.0.1', { caFile: './pki/ca.crt', certFile: './pki/client.crt', keyFile: './pki/client.key' }),
      target('expired', 'localhost', { caFile: './pki/ca.crt' }),
      target('selfsigned', 'localhost', { caFile: './pki/ca.crt' }),
      target('wronghost', 'localhost', { caFile: './pki/ca.crt' }),
      target('insecure', 'localhost', { insecureSkipVerify: true }),
    ];
    relay = await startRelay(
      {
        server: {},
        admin: {},
        storage: { path: './data' },
        sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' }],
        targets,
        routes: [{ name: 'all', source: 'flux', targets: targets.map((t) => t.name) }],
      },
      { files: { ...relayFiles(pki, ['client']), 'pki/ca.crt': pki.ca.cert } },
    );
  });

  after(async () => {
    if (relay) await relay.stop();
    for (const { server } of Object.values(stand)) server.close();
  });

  it('delivers only to servers whose certificate verifies, and says why the others failed', async () => {
    const name = `outbound-${uniqueSuffix()}`;
    const body = JSON.stringify(fluxEvent({ involvedObject: { name } }));
    const response = await fetch(`${relay.url}/flux/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Signature': signFlux(body, relay.hmacKey) },
      body,
    });
    assert.equal(response.status, 202);

    for (const delivered of ['good', 'mutual', 'insecure']) {
      await waitFor(() => stand[delivered].received.some((r) => r.alerts.some((a) => a.labels.name === name)), { what: `delivery to ${delivered}` });
    }
    assert.equal(stand.good.received[0].servername, 'localhost', 'SNI names the host');
    assert.equal(stand.mutual.received[0].client, 'flux-notification-controller', 'the client certificate was presented');

    const letters = await waitFor(async () => {
      const list = await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json();
      return list.length === 4 && list;
    }, { what: 'four dead letters' });
    const reasons = Object.fromEntries(letters.map((letter) => [letter.target, letter.reason]));
    assert.match(reasons.expired, /certificate verify failed.*certificate has expired/);
    assert.match(reasons.selfsigned, /certificate verify failed.*self-signed certificate/);
    assert.match(reasons.wronghost, /certificate verify failed.*hostname mismatch/);
    assert.match(reasons.noca, /certificate verify failed.*unable to get local issuer certificate/);
    for (const refused of ['expired', 'selfsigned', 'wronghost', 'noca']) {
      assert.equal(stand[refused].received.length, 0, `${refused} got a request`);
      assert.match(reasons[refused], /gave up after 2 attempts/);
    }
  });

  it('warns about insecureSkipVerify at start and at every reload, naming the target', async () => {
    const warnings = () => relay.logLines().filter((line) => line.level === 'warning' && /insecureSkipVerify/.test(line.msg));
    assert.equal(warnings().length, 1);
    assert.match(warnings()[0].msg, /target 'insecure'/);
    relay.process.kill('SIGHUP');
    await waitFor(() => warnings().length === 2, { what: 'the warning again after a reload' });
    assert.match(warnings()[1].msg, /target 'insecure'/);
  });
});
