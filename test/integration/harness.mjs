// Integration test harness: runs the real fluxrelay binary against a real Alertmanager, with
// bounded polls instead of sleeps, and never leaves a child process or a temp folder behind.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const relayBinary = process.env.FLUXRELAY_BIN || path.join(repoRoot, 'build', 'fluxrelay');
// A sanitizer build (make test-sanitize) links libasan: its allocator keeps freed memory in a
// quarantine on purpose, so resident-memory bounds hold only for the plain build.
export const relayIsSanitized = fs.existsSync(relayBinary) &&
  /libasan/.test(spawnSync('ldd', [relayBinary], { encoding: 'utf8' }).stdout || '');

// Generous on purpose: two busy cores shared by a compiler must not fail a test.
export const DEFAULT_TIMEOUT_MS = 30_000;
const LOG_LIMIT_BYTES = 4 * 1024 * 1024;
const LOG_TAIL_LINES = 150;
// What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print (make test-sanitize).
const SANITIZER_REPORT = /==\d+==ERROR: (?:Address|Leak)Sanitizer|: runtime error: /;

// ---------------------------------------------------------------------------------------------
// Bookkeeping: every child and temp folder is registered, so a failing or interrupted test file
// still cleans up, and the logs of every process are printed when the file fails.

const liveChildren = new Set();
const tempDirs = new Set();
const logs = []; // {name, log}

function killAllSync() {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
}

function removeTempDirsSync() {
  for (const dir of tempDirs) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  tempDirs.clear();
}

process.on('exit', (code) => {
  killAllSync();
  if ((code || process.exitCode) && logs.length > 0) {
    for (const { name, log } of logs) {
      process.stderr.write(`\n----- last lines of ${name} -----\n${log.tail(LOG_TAIL_LINES)}\n`);
    }
  }
  removeTempDirsSync();
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAllSync();
    removeTempDirsSync();
    process.exit(128 + os.constants.signals[signal]);
  });
}

// Stops every process still running and removes the temp folders; use as `after(cleanup)`.
export async function cleanup() {
  await Promise.all([...liveChildren].map((child) => stopChild(child, 'SIGKILL', 10_000)));
  for (const dir of tempDirs) {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  tempDirs.clear();
}

// A temp folder under os.tmpdir(), removed at the end of the test file.
export async function makeTempDir(prefix = 'fluxrelay-it-') {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

// Keeps a bounded copy of a process's output, to show when a test fails.
class Log {
  constructor() {
    this.chunks = [];
    this.bytes = 0;
  }
  append(chunk) {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes > LOG_LIMIT_BYTES && this.chunks.length > 1) {
      this.bytes -= this.chunks.shift().length;
    }
  }
  text() {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  tail(lines) {
    return this.text().split('\n').slice(-lines).join('\n');
  }
}

// Starts a process whose output is kept (and printed when the file fails) and which cleanup()
// kills. Returns {child, log, stderr, exited}.
export function spawnLogged(name, command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const log = new Log();
  const stderr = new Log();
  logs.push({ name: `${name} (pid ${child.pid})`, log });
  child.stdout.on('data', (chunk) => log.append(chunk));
  child.stderr.on('data', (chunk) => {
    log.append(chunk);
    stderr.append(chunk);
  });
  liveChildren.add(child);
  // Resolves with {code, signal} once the process has exited and its output is drained.
  const exited = new Promise((resolve) => {
    child.once('error', (error) => {
      liveChildren.delete(child);
      log.append(Buffer.from(`spawn error: ${error.message}\n`));
      resolve({ code: null, signal: null, error });
    });
    child.once('close', (code, signal) => {
      liveChildren.delete(child);
      // A sanitizer build's report fails the file even when the test itself did not look at
      // this process's exit status (a relay stopped by cleanup, a leak found at exit).
      if (SANITIZER_REPORT.test(log.text())) {
        process.stderr.write(`\n${name} (pid ${child.pid}) printed a sanitizer report\n`);
        process.exitCode = 1;
      }
      resolve({ code, signal });
    });
  });
  child.exited = exited;
  return { child, log, stderr, exited };
}

// Sends `signal`, waits up to timeoutMs for the exit, then SIGKILLs. Resolves with {code, signal}.
export async function stopChild(child, signal, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return child.exited;
  }
  child.kill(signal);
  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const outcome = await Promise.race([child.exited, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    const result = await child.exited;
    return { ...result, timedOut: true };
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Polling and small utilities.

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `fn` until it returns a truthy value (returned) or timeoutMs passes (throws). A throw
// from `fn` counts as "not yet", and the last one is quoted in the final error.
export async function waitFor(fn, { timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  let lastValue;
  for (;;) {
    try {
      lastValue = await fn();
      if (lastValue) {
        return lastValue;
      }
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      break;
    }
    await delay(intervalMs);
  }
  const detail = lastError ? `; last error: ${lastError.stack || lastError}` : `; last value: ${JSON.stringify(lastValue)}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
}

// A port free right now on 127.0.0.1.
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// A short random suffix, so that objects of different tests never share a dedup key.
export function uniqueSuffix() {
  return randomBytes(4).toString('hex');
}

// GET → {status, text}; status 0 when nothing answered. `ca` (PEM) is trusted for https besides
// the system's CAs, which fetch() cannot do.
async function httpGet(url, { ca, timeoutMs = 5_000 } = {}) {
  if (!ca) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      return { status: response.status, text: await response.text() };
    } catch {
      return { status: 0, text: '' };
    }
  }
  return new Promise((resolve) => {
    const req = https.get(url, { ca, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('error', () => resolve({ status: 0, text: '' }));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', () => resolve({ status: 0, text: '' }));
    req.on('timeout', () => req.destroy(new Error('timed out')));
  });
}

function findExecutable(name, extraDirs = []) {
  const dirs = [...(process.env.PATH || '').split(path.delimiter), ...extraDirs].filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return null;
}

// Minimal YAML writer for config objects: block style, every string double-quoted (JSON string
// syntax is valid YAML), so tests can build configs as plain objects.
export function toYaml(value, indent = '') {
  const scalar = (v) => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return JSON.stringify(v);
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw new Error(`toYaml: unsupported value ${v}`);
  };
  const isCollection = (v) => v !== null && typeof v === 'object';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return value
      .map((item) => {
        if (isCollection(item) && (Array.isArray(item) ? item.length : Object.keys(item).length)) {
          const inner = toYaml(item, `${indent}  `);
          return `${indent}- ${inner.slice(indent.length + 2)}`;
        }
        return `${indent}- ${isCollection(item) ? toYaml(item) : scalar(item)}`;
      })
      .join('\n');
  }
  if (isCollection(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    if (keys.length === 0) return '{}';
    return keys
      .map((key) => {
        const v = value[key];
        const k = /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key) ? key : JSON.stringify(key);
        if (isCollection(v) && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
          return `${indent}${k}:\n${toYaml(v, `${indent}  `)}`;
        }
        return `${indent}${k}: ${isCollection(v) ? toYaml(v) : scalar(v)}`;
      })
      .join('\n');
  }
  return scalar(value);
}

// ---------------------------------------------------------------------------------------------
// Alertmanager: the real one, Debian's prometheus-alertmanager.

const ALERTMANAGER_CONFIG = `# Written by the fluxrelay integration tests: keep alerts, notify nobody.
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
`;

export function alertmanagerBinary() {
  const found = findExecutable('prometheus-alertmanager', ['/usr/bin', '/usr/local/bin']) || findExecutable('alertmanager');
  if (!found) {
    throw new Error('prometheus-alertmanager not found on PATH or in /usr/bin; run scripts/install-deps.sh');
  }
  return found;
}

// Starts an Alertmanager on a free 127.0.0.1 port and waits until /-/ready answers 200.
// With `tls` ({cert, key, ca}, PEM text for a certificate naming localhost) it serves HTTPS only
// and its url is https://localhost:PORT.
// Returns {url, port, alertsUrl, stop(), start(), restart(), alerts(filter), log()}.
export async function startAlertmanager({ tls, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const binary = alertmanagerBinary();
  const dir = await makeTempDir('fluxrelay-it-am-');
  const configFile = path.join(dir, 'alertmanager.yml');
  await fsp.writeFile(configFile, ALERTMANAGER_CONFIG);
  const storage = path.join(dir, 'data');
  await fsp.mkdir(storage);
  const webArgs = [];
  if (tls) {
    await fsp.writeFile(path.join(dir, 'tls.crt'), tls.cert);
    await fsp.writeFile(path.join(dir, 'tls.key'), tls.key, { mode: 0o600 });
    const webConfig = path.join(dir, 'web.yml');
    await fsp.writeFile(webConfig, `tls_server_config:\n  cert_file: ${path.join(dir, 'tls.crt')}\n  key_file: ${path.join(dir, 'tls.key')}\n`);
    webArgs.push(`--web.config.file=${webConfig}`);
  }
  const get = (url) => httpGet(url, { ca: tls?.ca, timeoutMs: 10_000 });

  const am = { port: 0, url: '', alertsUrl: '', process: null, logs: [] };

  // Starts the process on am.port and waits for readiness; false if it exited first.
  async function launch() {
    const { child, log, exited } = spawnLogged(`alertmanager :${am.port}`, binary, [
      `--config.file=${configFile}`,
      `--storage.path=${storage}`,
      `--web.listen-address=127.0.0.1:${am.port}`,
      // Empty disables clustering: no gossip port, no waiting for peers.
      '--cluster.listen-address=',
      '--log.level=info',
      ...webArgs,
    ]);
    am.process = child;
    am.logs.push(log);
    let exitedEarly = false;
    exited.then(() => {
      exitedEarly = true;
    });
    await waitFor(async () => exitedEarly || (await get(`${am.url}/-/ready`)).status === 200, {
      timeoutMs,
      what: `Alertmanager ready on ${am.url}`,
    }).catch((error) => {
      error.message += `\nAlertmanager log:\n${log.tail(40)}`;
      throw error;
    });
    return !exitedEarly ? true : { log };
  }

  am.start = async () => {
    if (am.process && am.process.exitCode === null && am.process.signalCode === null) {
      throw new Error('Alertmanager already running');
    }
    const outcome = await launch();
    if (outcome !== true) {
      throw new Error(`Alertmanager exited during start-up on port ${am.port}:\n${outcome.log.tail(40)}`);
    }
  };

  am.stop = async () => {
    if (!am.process) return;
    const result = await stopChild(am.process, 'SIGTERM', 15_000);
    // The port must be free again before a restart on the same port can bind it.
    await waitFor(async () => (await get(`${am.url}/-/ready`)).status === 0, {
      timeoutMs: 10_000,
      what: `Alertmanager on ${am.url} to stop listening`,
    });
    return result;
  };

  am.restart = async () => {
    await am.stop();
    await am.start();
  };

  // GET /api/v2/alerts with matchers, e.g. {alertname: 'FluxKustomizationReconciliationfailed'}
  // or ['name=~"podinfo.*"']. Active, silenced, inhibited and unprocessed alerts are all listed.
  am.alerts = async (filter = {}) => {
    const params = new URLSearchParams();
    const matchers = Array.isArray(filter)
      ? filter
      : Object.entries(filter).map(([label, value]) => `${label}="${String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
    for (const matcher of matchers) params.append('filter', matcher);
    const { status, text } = await get(`${am.alertsUrl}?${params}`);
    if (status !== 200) {
      throw new Error(`GET ${am.alertsUrl}?${params} → ${status}: ${text}`);
    }
    return JSON.parse(text);
  };

  am.log = () => am.logs.map((log) => log.text()).join('\n');

  // A port can be taken between freePort() and the bind: try a few.
  let lastFailure;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    am.port = await freePort();
    am.url = tls ? `https://localhost:${am.port}` : `http://127.0.0.1:${am.port}`;
    am.alertsUrl = `${am.url}/api/v2/alerts`;
    const outcome = await launch();
    if (outcome === true) return am;
    lastFailure = outcome.log.tail(40);
  }
  throw new Error(`Alertmanager failed to start:\n${lastFailure}`);
}

// ---------------------------------------------------------------------------------------------
// Prometheus: the real one, Debian's prometheus, to evaluate the rules deploy/ ships.

export function prometheusBinary() {
  const found = findExecutable('prometheus', ['/usr/bin', '/usr/local/bin']);
  if (!found) {
    throw new Error('prometheus not found on PATH or in /usr/bin; run scripts/install-deps.sh');
  }
  return found;
}

// Starts a Prometheus on a free 127.0.0.1 port with its TSDB in a temp folder, scraping and
// evaluating every `interval`, and waits until /-/ready answers 200.
// `scrape`: {targets: ['127.0.0.1:PORT'], labels: {...} (target labels), honorLabels};
// `ruleGroups`: the `groups` of a rule file; `alertmanagers`: ['127.0.0.1:PORT'] it sends to.
// Returns {url, port, dir, api(path), stop(), log()}; api() GETs /api/v1/... and returns `data`.
export async function startPrometheus({ scrape, ruleGroups = [], alertmanagers = [], interval = '1s', timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const binary = prometheusBinary();
  const dir = await makeTempDir('fluxrelay-it-prom-');
  const rulesFile = path.join(dir, 'rules.yml');
  await fsp.writeFile(rulesFile, `${toYaml({ groups: ruleGroups })}\n`);
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    rule_files: [rulesFile],
    scrape_configs: scrape
      ? [{ job_name: 'fluxrelay', honor_labels: Boolean(scrape.honorLabels), static_configs: [{ targets: scrape.targets, labels: scrape.labels }] }]
      : [],
  };
  if (alertmanagers.length > 0) config.alerting = { alertmanagers: [{ static_configs: [{ targets: alertmanagers }] }] };
  const configFile = path.join(dir, 'prometheus.yml');
  await fsp.writeFile(configFile, `# Written by the fluxrelay integration tests.\n${toYaml(config)}\n`);

  const prom = { port: 0, url: '', dir, process: null, logs: [] };
  prom.api = async (apiPath) => {
    const { status, text } = await httpGet(`${prom.url}/api/v1/${apiPath}`, { timeoutMs: 10_000 });
    if (status !== 200) throw new Error(`GET /api/v1/${apiPath} → ${status}: ${text}`);
    return JSON.parse(text).data;
  };
  prom.stop = () => stopChild(prom.process, 'SIGTERM', 15_000);
  prom.log = () => prom.logs.map((log) => log.text()).join('\n');

  // A port can be taken between freePort() and the bind: try a few.
  let lastFailure;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    prom.port = await freePort();
    prom.url = `http://127.0.0.1:${prom.port}`;
    const { child, log, exited } = spawnLogged(`prometheus :${prom.port}`, binary, [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, `data-${attempt}`)}`,
      `--web.listen-address=127.0.0.1:${prom.port}`,
    ]);
    prom.process = child;
    prom.logs.push(log);
    let exitedEarly = false;
    exited.then(() => {
      exitedEarly = true;
    });
    await waitFor(async () => exitedEarly || (await httpGet(`${prom.url}/-/ready`)).status === 200, {
      timeoutMs,
      what: `Prometheus ready on ${prom.url}`,
    }).catch((error) => {
      error.message += `\nPrometheus log:\n${log.tail(40)}`;
      throw error;
    });
    if (!exitedEarly) return prom;
    lastFailure = log.tail(40);
  }
  throw new Error(`Prometheus failed to start:\n${lastFailure}`);
}

// ---------------------------------------------------------------------------------------------
// Redis: the real one, Debian's redis-server, for the shared spool (storage.redis).

export function redisServerBinary() {
  return findExecutable('redis-server', ['/usr/bin', '/usr/local/bin']);
}

// True once something on 127.0.0.1:port answers PING with PONG.
function redisAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

// Starts a redis-server on a free 127.0.0.1 port with its data in a temp folder (AOF on unless
// appendOnly is false; appendfsync as given) and waits until it answers PING.
// Returns {url, port, dir, stop(), kill(), start(), restart(), pause(), resume(), log()};
// start() after stop() or kill() reuses the port and the data.
export async function startRedis({ appendOnly = true, appendFsync = 'everysec', timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const binary = redisServerBinary();
  if (!binary) {
    throw new Error('redis-server not found on PATH or in /usr/bin; run scripts/install-deps.sh');
  }
  const dir = await makeTempDir('fluxrelay-it-redis-');
  const redis = { port: 0, url: '', dir, process: null, logs: [] };

  async function launch() {
    const { child, log, exited } = spawnLogged(`redis-server :${redis.port}`, binary, [
      '--port', String(redis.port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--save', '',
      '--appendonly', appendOnly ? 'yes' : 'no',
      '--appendfsync', appendFsync,
      '--daemonize', 'no',
    ]);
    redis.process = child;
    redis.logs.push(log);
    let exitedEarly = false;
    exited.then(() => {
      exitedEarly = true;
    });
    await waitFor(async () => exitedEarly || (await redisAnswers(redis.port)), {
      timeoutMs,
      what: `redis-server answering on port ${redis.port}`,
    });
    return !exitedEarly ? true : { log };
  }

  redis.start = async () => {
    const outcome = await launch();
    if (outcome !== true) throw new Error(`redis-server exited during start-up:\n${outcome.log.tail(40)}`);
  };
  const halt = async (signal) => {
    if (!redis.process) return undefined;
    const result = await stopChild(redis.process, signal, 15_000);
    await waitFor(async () => !(await redisAnswers(redis.port)), { timeoutMs: 10_000, what: 'redis-server to stop' });
    return result;
  };
  // SIGTERM: Redis writes its AOF out and exits. kill(): SIGKILL, as a crash.
  redis.stop = () => halt('SIGTERM');
  redis.kill = () => halt('SIGKILL');
  redis.restart = async () => {
    await redis.stop();
    await redis.start();
  };
  // SIGSTOP / SIGCONT: a Redis that hangs (a stall, a swapped-out host) rather than dies: its
  // sockets stay open and connects still succeed, but nothing is answered until resume().
  redis.pause = () => redis.process.kill('SIGSTOP');
  redis.resume = () => redis.process.kill('SIGCONT');
  redis.log = () => redis.logs.map((log) => log.text()).join('\n');
  // One command through redis-cli (Debian's redis-tools, a dependency of redis-server): its output lines.
  redis.cli = (...args) => {
    const result = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), ...args], { encoding: 'utf8', timeout: 10_000 });
    if (result.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${result.stderr || result.error}`);
    return result.stdout.split('\n').filter((line) => line !== '');
  };

  let lastFailure;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    redis.port = await freePort();
    redis.url = `redis://127.0.0.1:${redis.port}/0`;
    const outcome = await launch();
    if (outcome === true) return redis;
    lastFailure = outcome.log.tail(40);
  }
  throw new Error(`redis-server failed to start:\n${lastFailure}`);
}

// ---------------------------------------------------------------------------------------------
// A forward proxy: the real one, Debian's tinyproxy (package tinyproxy-bin).

// True once something accepts a TCP connection on 127.0.0.1:port.
function tcpAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => done(true));
  });
}

// Starts tinyproxy on a free 127.0.0.1 port, for clients on 127.0.0.1 only. `basicAuth`
// ({user, password}) makes it require those credentials; `connectPorts` are the only ports it
// opens CONNECT tunnels to (none listed: any). It logs every connection and request line.
// Returns {url, port, log(), stop()}.
export async function startTinyproxy({ basicAuth, connectPorts = [], timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const binary = findExecutable('tinyproxy', ['/usr/bin', '/usr/sbin']);
  if (!binary) {
    throw new Error('tinyproxy not found on PATH or in /usr/bin; run scripts/install-deps.sh');
  }
  const dir = await makeTempDir('fluxrelay-it-proxy-');
  const logFile = path.join(dir, 'tinyproxy.log');
  const proxy = { port: 0, url: '', process: null };
  proxy.log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');

  let lastFailure;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    proxy.port = await freePort();
    proxy.url = `http://127.0.0.1:${proxy.port}`;
    const lines = [
      '# Written by the fluxrelay integration tests.',
      `Port ${proxy.port}`,
      'Listen 127.0.0.1',
      'Allow 127.0.0.1',
      'Timeout 30',
      'MaxClients 20',
      `LogFile "${logFile}"`,
      // Connect: each connection and request line, which the tests look for.
      'LogLevel Connect',
      'DisableViaHeader Yes',
      ...connectPorts.map((port) => `ConnectPort ${port}`),
      ...(basicAuth ? [`BasicAuth ${basicAuth.user} ${basicAuth.password}`] : []),
    ];
    const configFile = path.join(dir, `tinyproxy-${proxy.port}.conf`);
    await fsp.writeFile(configFile, `${lines.join('\n')}\n`);
    // -d: in the foreground, so that it is this process that is stopped.
    const { child, log, exited } = spawnLogged(`tinyproxy :${proxy.port}`, binary, ['-d', '-c', configFile]);
    proxy.process = child;
    let exitedEarly = false;
    exited.then(() => {
      exitedEarly = true;
    });
    await waitFor(async () => exitedEarly || (await tcpAnswers(proxy.port)), { timeoutMs, what: `tinyproxy listening on port ${proxy.port}` });
    if (!exitedEarly) {
      proxy.stop = () => stopChild(child, 'SIGTERM', 10_000);
      return proxy;
    }
    lastFailure = log.tail(40);
  }
  throw new Error(`tinyproxy failed to start:\n${lastFailure}`);
}

// ---------------------------------------------------------------------------------------------
// fluxrelay.

export const DEFAULT_HMAC_KEY = 'integration-test-hmac-key-0123456789abcdef';

// A config object for one relay: one `flux` source at /flux/events (HMAC with DEFAULT_HMAC_KEY),
// one alertmanager target with short retries, one route taking every event. Listen addresses
// are filled in by startRelay.
export function baseConfig({ alertmanagerUrl, route = {}, target = {}, source = {}, server = {} } = {}) {
  return {
    server: { ...server },
    admin: {},
    storage: { path: './data' },
    sources: [{ name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac', ...source }],
    targets: [
      {
        name: 'alertmanager',
        type: 'alertmanager',
        address: `${alertmanagerUrl}/api/v2/alerts`,
        timeout: '5s',
        retry: { initialInterval: '100ms', maxInterval: '1s' },
        ...target,
      },
    ],
    routes: [{ name: 'all-to-alertmanager', source: 'flux', targets: ['alertmanager'], ...route }],
  };
}

function listenPort(text, section) {
  const match = new RegExp(`^${section}:[^\\n]*\\n(?:[ \\t]+[^\\n]*\\n)*?[ \\t]+listen:\\s*["']?[^\\s"':]*:(\\d+)`, 'm').exec(text);
  return match ? Number(match[1]) : null;
}

// With FLUXRELAY_IT_STORAGE=redis, the Redis that startRelay gives config objects instead of their
// SQLite folder (started on first use, again after a cleanup() stopped it).
let sharedRedisServer = null;
async function sharedRedis() {
  const running = sharedRedisServer && sharedRedisServer.process && sharedRedisServer.process.exitCode === null && sharedRedisServer.process.signalCode === null;
  if (!running) sharedRedisServer = await startRedis();
  return sharedRedisServer;
}

// Writes the config (an object, or YAML text with its listen addresses set) and the secret
// files into a temp folder, starts `fluxrelay serve --config` there and waits for /readyz.
// A config object's storage becomes a Redis when FLUXRELAY_IT_STORAGE=redis (see sharedRedis).
// `files` maps file names (relative to the config) to contents; a config object gets
// `flux-hmac` = DEFAULT_HMAC_KEY unless it says otherwise.
// `ready(relay)` replaces the readiness check (plain GET adminUrl/readyz answering 200), e.g. for
// an admin listener that speaks TLS.
// `wrapper` is a command and its arguments that exec the relay (e.g. a fault injector's
// launcher), `env` variables added to the relay's environment; both are kept for restart().
// Returns {url, adminUrl, dir, configFile, hmacKey, process, log(), stop(), kill()}.
export async function startRelay(config, { files = {}, hmacKey = DEFAULT_HMAC_KEY, logLevel = 'debug', timeoutMs = DEFAULT_TIMEOUT_MS, ready, wrapper = [], env = {} } = {}) {
  if (!fs.existsSync(relayBinary)) {
    throw new Error(`fluxrelay binary not found at ${relayBinary}: build it first or set FLUXRELAY_BIN`);
  }
  const dir = await makeTempDir('fluxrelay-it-relay-');
  let text;
  let ingestPort;
  let adminPort;
  if (typeof config === 'string') {
    text = config;
    ingestPort = listenPort(text, 'server');
    adminPort = listenPort(text, 'admin');
    if (!ingestPort || !adminPort) {
      throw new Error('startRelay: YAML text must set server.listen and admin.listen to 127.0.0.1:PORT');
    }
  } else {
    const object = structuredClone(config);
    if (process.env.FLUXRELAY_IT_STORAGE === 'redis' && !object.storage?.redis) {
      // The same suite on the shared spool: each relay gets a key prefix of its own in one Redis.
      const { path: _path, sync: _sync, ...rest } = object.storage || {};
      object.storage = { ...rest, redis: { url: (await sharedRedis()).url, keyPrefix: `it-${uniqueSuffix()}:` } };
    }
    object.server = object.server || {};
    object.admin = object.admin || {};
    if (!object.server.listen) object.server.listen = `127.0.0.1:${await freePort()}`;
    if (!object.admin.listen) object.admin.listen = `127.0.0.1:${await freePort()}`;
    ingestPort = Number(object.server.listen.split(':').pop());
    adminPort = Number(object.admin.listen.split(':').pop());
    text = `${toYaml(object)}\n`;
    files = { 'flux-hmac': hmacKey, ...files };
  }
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, content, { mode: 0o600 });
  }
  const configFile = path.join(dir, 'fluxrelay.yaml');
  await fsp.writeFile(configFile, text);

  const relay = {
    url: `http://127.0.0.1:${ingestPort}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    dir,
    configFile,
    configText: text,
    hmacKey,
    ready: ready || (async (r) => (await httpGet(`${r.adminUrl}/readyz`)).status === 200),
    wrapper,
    env,
  };
  await launchRelay(relay, { logLevel, timeoutMs });
  return relay;
}

// Starts (or starts again, on the same folder and storage) the relay process behind `relay`,
// waits for /readyz, and (re)binds process, log(), logLines(), stop(), kill() and restart().
async function launchRelay(relay, { logLevel, timeoutMs }) {
  const { configFile, dir, configText: text, wrapper = [], env = {} } = relay;
  const args = ['serve', '--config', configFile, '--log-level', logLevel];
  const [command, ...commandArgs] = [...wrapper, relayBinary, ...args];
  const { child, log, stderr, exited } = spawnLogged('fluxrelay', command, commandArgs, {
    cwd: dir,
    env: { ...process.env, ...env },
  });
  Object.assign(relay, {
    process: child,
    exited,
    log: () => log.text(),
    // stderr as JSON log lines; a line that is not JSON is kept as {unparsed: line}.
    logLines: () =>
      stderr
        .text()
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => {
          try {
            return JSON.parse(line);
          } catch {
            return { unparsed: line };
          }
        }),
  });

  let exitedEarly = null;
  exited.then((result) => {
    exitedEarly = result;
  });
  try {
    await waitFor(async () => exitedEarly || (await relay.ready(relay)), {
      timeoutMs,
      what: `fluxrelay ready on ${relay.adminUrl}/readyz`,
    });
  } catch (error) {
    error.message += `\nconfig:\n${text}\nfluxrelay log:\n${log.tail(60)}`;
    throw error;
  }
  if (exitedEarly) {
    throw new Error(`fluxrelay exited during start-up (${JSON.stringify(exitedEarly)}):\nconfig:\n${text}\nlog:\n${log.tail(60)}`);
  }

  // SIGTERM and a clean exit: code 0 is part of the contract.
  relay.stop = async ({ timeoutMs: stopTimeout = DEFAULT_TIMEOUT_MS } = {}) => {
    const result = await stopChild(child, 'SIGTERM', stopTimeout);
    if (result.timedOut) {
      throw new Error(`fluxrelay did not exit within ${stopTimeout} ms of SIGTERM\n${log.tail(40)}`);
    }
    if (result.code !== 0) {
      throw new Error(`fluxrelay exited with ${JSON.stringify(result)} after SIGTERM, expected code 0\n${log.tail(40)}`);
    }
    return result;
  };
  relay.kill = () => stopChild(child, 'SIGKILL', 10_000);
  // A new process on the same config, folder and storage (after stop() or kill()).
  relay.restart = () => launchRelay(relay, { logLevel, timeoutMs });
}

// Runs the binary to completion (check-config, version, ...). Returns {code, signal, stdout, stderr}.
export function runRelayCommand(args, { cwd, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  if (!fs.existsSync(relayBinary)) {
    throw new Error(`fluxrelay binary not found at ${relayBinary}: build it first or set FLUXRELAY_BIN`);
  }
  return new Promise((resolve) => {
    const { child, exited } = spawnLogged(`fluxrelay ${args[0] || ''}`, relayBinary, args, { cwd });
    const stdout = [];
    const stderr = [];
    child.stdout.on('data', (chunk) => stdout.push(chunk));
    child.stderr.on('data', (chunk) => stderr.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Flux events.

// `X-Signature` as Flux's generic-hmac provider computes it: HMAC over the raw body bytes.
export function signFlux(body, key, alg = 'sha256') {
  return `${alg}=${createHmac(alg, key).update(body).digest('hex')}`;
}

// A Flux event as notification-controller forwards it; `overrides` replace top-level fields,
// `involvedObject` and `metadata` are merged.
export function fluxEvent(overrides = {}) {
  const { involvedObject = {}, metadata = {}, ...rest } = overrides;
  return {
    involvedObject: {
      kind: 'Kustomization',
      namespace: 'flux-system',
      name: 'apps',
      uid: '7d0cdc51-ddcf-4743-b223-83ca5c699632',
      apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
      resourceVersion: '56921',
      ...involvedObject,
    },
    severity: 'error',
    // Go's time.Time marshals to RFC3339 with second precision in events.
    timestamp: new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
    message: 'Health check failed after 5m0s: timeout waiting for: [Deployment/default/podinfo status: \'InProgress\']',
    reason: 'HealthCheckFailed',
    metadata: { revision: 'main@sha1:bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07', ...metadata },
    reportingController: 'kustomize-controller',
    reportingInstance: 'kustomize-controller-7f5c9d7b9d-x2v6q',
    ...rest,
  };
}

// The info event of `failing`'s object recovering, with its metadata; `overrides` as fluxEvent's.
export function recoveryEvent(failing, overrides = {}) {
  return fluxEvent({
    involvedObject: { ...failing.involvedObject },
    severity: 'info',
    reason: 'ReconciliationSucceeded',
    message: 'Reconciliation finished in 1.2s, next run in 10m0s',
    metadata: { ...failing.metadata },
    ...overrides,
  });
}

// POSTs an event (object or raw string) to the relay. Signs with `key` (default: the relay's
// key; null sends no signature). Returns {status, json, text, headers}; json is null if the
// body is not JSON. Throws (TimeoutError) when no answer came within timeoutMs.
export async function postEvent(relay, urlPath, event, { key = relay.hmacKey, alg = 'sha256', headers = {}, method = 'POST', contentType = 'application/json', timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const body = typeof event === 'string' || Buffer.isBuffer(event) ? event : JSON.stringify(event);
  const requestHeaders = { ...(contentType ? { 'Content-Type': contentType } : {}) };
  if (key) requestHeaders['X-Signature'] = signFlux(body, key, alg);
  Object.assign(requestHeaders, headers);
  const init = { method, headers: requestHeaders, signal: AbortSignal.timeout(timeoutMs) };
  if (method !== 'GET' && method !== 'HEAD') init.body = body;
  return request(`${relay.url}${urlPath}`, init);
}

// The value of one sample in a Prometheus text scrape: the first line of `name` whose labels
// include all of `labels`; null when there is none.
export function metricSample(text, name, labels = {}) {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (wanted.every((pair) => line.includes(pair))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return null;
}

// fetch() returning {status, json, text, headers}.
export async function request(url, init = {}) {
  const response = await fetch(url, { signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS), ...init });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: left null for the test to assert on
  }
  return { status: response.status, json, text, headers: response.headers };
}

// The label set Flux's Alertmanager notifier gives an event.
export function expectedFluxLabels(event) {
  const title = (reason) => reason.replace(/[A-Za-z]+/g, (word) => word[0].toUpperCase() + word.slice(1).toLowerCase());
  const labels = { ...(event.metadata || {}) };
  delete labels.summary;
  return {
    ...labels,
    alertname: `Flux${event.involvedObject.kind}${title(event.reason)}`,
    severity: event.severity,
    reason: event.reason,
    kind: event.involvedObject.kind,
    name: event.involvedObject.name,
    namespace: event.involvedObject.namespace,
    reportingcontroller: event.reportingController,
  };
}
