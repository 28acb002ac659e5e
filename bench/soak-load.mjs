// The soak benchmark's Node half (bench/soak.sh runs it; no npm packages needed):
//
//   node bench/soak-load.mjs receiver PORT_FILE TOKEN_FILE
//       a Flux Receiver stand-in that checks each request as notification-controller does (the
//       Receiver's /hook/ path, JSON, X-Hub-Signature-256 with the Receiver's token, a push event)
//       and only counts: reconciles per X-GitHub-Delivery id, at GET /soak/stats
//   node bench/soak-load.mjs load SETTINGS.json
//       the open-loop load generator (signed Flux events and GitHub pushes at a fixed rate, the
//       latency of each request), the sampler (every few seconds: relay RSS, FDs, CPU, queue depth,
//       the interval's p99), Alertmanager's stop cycle (SIGSTOP/SIGCONT), the drain after the load,
//       and the final count of lost and duplicated deliveries at the peers: SETTINGS.summary
//       (JSON) and SETTINGS.samples (CSV)
//   node bench/soak-load.mjs report SUMMARY.json
//       bench/soak.md's text from the summary, on stdout
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';

const [mode, ...args] = process.argv.slice(2);

const RECEIVER = { name: 'github-webhook', namespace: 'flux-system' };
const NAMESPACES = 40;

function getText(url, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('error', () => resolve({ status: 0, text: '' }));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', () => resolve({ status: 0, text: '' }));
    req.on('timeout', () => req.destroy(new Error('timed out')));
  });
}

// Sum of every series of `name` in a Prometheus text scrape, optionally only those whose labels
// contain `labelPart`; by target label when `byLabel` is given.
function metricSum(text, name, labelPart = '') {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `))) continue;
    if (labelPart && !line.includes(labelPart)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// The Flux Receiver stand-in.

function runReceiver(portFile, tokenFile) {
  const token = fs.readFileSync(tokenFile, 'utf8').trim();
  const hookPath = `/hook/${createHash('sha256').update(token + RECEIVER.name + RECEIVER.namespace).digest('hex')}`;
  const counts = new Map(); // delivery id → reconciles
  let reconciles = 0;
  const refused = {}; // status → count
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const answer = (status, text = '') => {
        if (status !== 200) refused[status] = (refused[status] || 0) + 1;
        res.writeHead(status, { 'Content-Type': status === 200 && text ? 'application/json' : 'text/plain; charset=utf-8' });
        res.end(text);
      };
      if (req.method === 'GET' && req.url === '/soak/stats') {
        return answer(200, JSON.stringify({ reconciles, refused, deliveries: Object.fromEntries(counts) }));
      }
      if (req.url !== hookPath) return answer(404);
      if ((req.headers['content-type'] || '').split(';')[0].trim().toLowerCase() !== 'application/json') return answer(400);
      const match = /^sha256=([0-9a-fA-F]{64})$/.exec(req.headers['x-hub-signature-256'] || '');
      const expected = createHmac('sha256', token).update(body).digest();
      if (!match || !timingSafeEqual(Buffer.from(match[1], 'hex'), expected)) return answer(400);
      if ((req.headers['x-github-event'] || '').toLowerCase() !== 'push') return answer(400);
      const id = req.headers['x-github-delivery'] || '';
      counts.set(id, (counts.get(id) || 0) + 1);
      reconciles += 1;
      return answer(200);
    });
  });
  server.keepAliveTimeout = 120_000;
  server.listen(0, '127.0.0.1', () => fs.writeFileSync(portFile, String(server.address().port)));
  process.on('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Events. Request `seq` is, by seq % 20: 0–4 a GitHub push (25 %), 5–9 a Flux info event (25 %),
// 10–19 a Flux error event (50 %). Flux events cycle through OBJECTS objects; each carries its
// seq in metadata (→ the alert label soak_seq) and a revision of its own, so every event is one
// alert with a label set of its own and never a dedup duplicate. Each push has its own delivery id.

const OBJECTS = 3000;
const KINDS = [
  ['Kustomization', 'kustomize.toolkit.fluxcd.io/v1', 'kustomize-controller', 'HealthCheckFailed', 'ReconciliationSucceeded'],
  ['HelmRelease', 'helm.toolkit.fluxcd.io/v2', 'helm-controller', 'UpgradeFailed', 'UpgradeSucceeded'],
  ['GitRepository', 'source.toolkit.fluxcd.io/v1', 'source-controller', 'GitOperationFailed', 'NewArtifact'],
  ['OCIRepository', 'source.toolkit.fluxcd.io/v1beta2', 'source-controller', 'OCIArtifactPullFailed', 'NewArtifact'],
  ['HelmRepository', 'source.toolkit.fluxcd.io/v1', 'source-controller', 'IndexationFailed', 'ArtifactUpToDate'],
];

const kindOf = (seq) => {
  const k = seq % 20;
  return k < 5 ? 'github' : k < 10 ? 'info' : 'error';
};
const sha1 = (text) => createHash('sha1').update(text).digest('hex');
const deliveryId = (run, seq) => `${run}-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`;
const seqOfDelivery = (id) => parseInt(id.slice(-12), 16);

function fluxBody(seq) {
  const object = (seq * 7919) % OBJECTS;
  const [kind, apiVersion, controller, failReason, okReason] = KINDS[object % KINDS.length];
  const name = `app-${String(object).padStart(4, '0')}`;
  const namespace = `team-${String(object % NAMESPACES).padStart(2, '0')}`;
  const error = kindOf(seq) === 'error';
  const revision = `main@sha1:${sha1(`rev-${seq}`)}`;
  const message = error
    ? `Health check failed after 5m0s: timeout waiting for: [Deployment/${namespace}/${name} status: 'InProgress'] at revision ${revision}, attempt ${(seq % 7) + 1}`
    : `Reconciliation finished in ${(seq % 900) / 100 + 0.5}s, next run in 10m0s`;
  return JSON.stringify({
    involvedObject: { kind, namespace, name, uid: `00000000-0000-4000-8000-${String(object).padStart(12, '0')}`, apiVersion, resourceVersion: String(100000 + seq) },
    severity: error ? 'error' : 'info',
    timestamp: new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
    message,
    reason: error ? failReason : okReason,
    metadata: { revision, soak_seq: String(seq) },
    reportingController: controller,
    reportingInstance: `${controller}-7f5c9d7b9d-x2v6q`,
  });
}

// A push as GitHub sends it (the fields Flux and fluxrelay read, and the usual bulk around them).
function pushBody(seq) {
  const after = sha1(`push-${seq}`);
  const before = sha1(`push-${seq - 1}`);
  const when = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const author = { name: 'Soak Tester', email: 'soak@example.com', username: 'soak-tester' };
  const commit = {
    id: after, tree_id: sha1(`tree-${seq}`), distinct: true, message: `apps: bump podinfo to 6.5.${seq % 100}`,
    timestamp: when, url: `https://github.com/example/home-ops/commit/${after}`, author, committer: author,
    added: [], removed: [], modified: [`kubernetes/apps/team-${String(seq % NAMESPACES).padStart(2, '0')}/podinfo/helmrelease.yaml`],
  };
  const owner = { name: 'example', login: 'example', id: 1000, type: 'Organization', url: 'https://api.github.com/users/example' };
  return JSON.stringify({
    ref: 'refs/heads/main', before, after, created: false, deleted: false, forced: false, base_ref: null,
    compare: `https://github.com/example/home-ops/compare/${before.slice(0, 12)}...${after.slice(0, 12)}`,
    commits: [commit], head_commit: commit,
    repository: {
      id: 123456789, node_id: 'R_kgDOHomeOps', name: 'home-ops', full_name: 'example/home-ops', private: false, owner,
      html_url: 'https://github.com/example/home-ops', clone_url: 'https://github.com/example/home-ops.git',
      ssh_url: 'git@github.com:example/home-ops.git', default_branch: 'main', master_branch: 'main',
      pushed_at: Math.floor(Date.now() / 1000), created_at: 1600000000, size: 4096, visibility: 'public',
    },
    pusher: { name: 'soak-tester', email: 'soak@example.com' },
    sender: { login: 'soak-tester', id: 2000, type: 'User', url: 'https://api.github.com/users/soak-tester' },
  });
}

// ---------------------------------------------------------------------------------------------
// Load, sampling, Alertmanager's cycle, drain and the final count.

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// Least squares slope of ys over xs, and the fit's R².
function fit(xs, ys) {
  const n = xs.length;
  if (n < 3) return { slope: NaN, r2: NaN, n };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i += 1) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return { slope: sxy / sxx, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy), n };
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function runLoad(settingsFile) {
  const s = JSON.parse(fs.readFileSync(settingsFile, 'utf8'));
  const fluxKey = fs.readFileSync(s.fluxKeyFile, 'utf8').trim();
  const githubSecret = fs.readFileSync(s.githubSecretFile, 'utf8').trim();
  const run = randomBytes(4).toString('hex');
  const total = Math.round(s.rate * s.durationS);
  const relay = new URL(s.relayUrl);

  // Per request: outcome (0 not answered yet, 1 2xx, 2 503, 3 other status, 4 error or timeout),
  // latency from its scheduled time and from the moment it was handed to the socket pool (ms).
  const outcome = new Uint8Array(total);
  const latSched = new Float32Array(total).fill(NaN);
  const latSend = new Float32Array(total).fill(NaN);
  const statuses = {};
  const errors = {};
  let issued = 0;
  let answered = 0;
  let interval = { sched: [], send: [], lag: [] };

  const agent = new http.Agent({ keepAlive: true, maxSockets: s.maxSockets, keepAliveMsecs: 1000 });
  const t0 = performance.now();
  const elapsedMs = () => performance.now() - t0;

  function send(seq) {
    const kind = kindOf(seq);
    const body = kind === 'github' ? pushBody(seq) : fluxBody(seq);
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    let path;
    if (kind === 'github') {
      path = s.githubPath;
      Object.assign(headers, {
        'User-Agent': 'GitHub-Hookshot/044aadd',
        'X-GitHub-Event': 'push',
        'X-GitHub-Delivery': deliveryId(run, seq),
        'X-GitHub-Hook-ID': '292430182',
        'X-Hub-Signature-256': `sha256=${createHmac('sha256', githubSecret).update(body).digest('hex')}`,
      });
    } else {
      path = s.fluxPath;
      headers['X-Signature'] = `sha256=${createHmac('sha256', fluxKey).update(body).digest('hex')}`;
    }
    const scheduled = (seq * 1000) / s.rate;
    const sentAt = elapsedMs();
    interval.lag.push(sentAt - scheduled);
    const finish = (code, status) => {
      if (outcome[seq] !== 0) return;
      const now = elapsedMs();
      outcome[seq] = code;
      answered += 1;
      if (code !== 4) {
        latSched[seq] = now - scheduled;
        latSend[seq] = now - sentAt;
        interval.sched.push(now - scheduled);
        interval.send.push(now - sentAt);
        statuses[status] = (statuses[status] || 0) + 1;
      }
    };
    const req = http.request(
      { host: relay.hostname, port: relay.port, method: 'POST', path, headers, agent, timeout: s.requestTimeoutMs },
      (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode >= 200 && res.statusCode < 300 ? 1 : res.statusCode === 503 ? 2 : 3, res.statusCode));
        res.on('error', (error) => {
          errors[error.code || error.message] = (errors[error.code || error.message] || 0) + 1;
          finish(4);
        });
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (error) => {
      if (outcome[seq] !== 0) return;
      errors[error.code || error.message] = (errors[error.code || error.message] || 0) + 1;
      finish(4);
    });
    req.end(body);
  }

  // Alertmanager's cycle: stopped at first, first + period, ... for `down` seconds each.
  const amEvents = []; // {t, action}
  let amStopped = false;
  const amSignal = (action) => {
    try {
      process.kill(s.alertmanagerPid, action === 'stop' ? 'SIGSTOP' : 'SIGCONT');
    } catch (error) {
      console.error(`soak: ${action} Alertmanager: ${error.message}`);
    }
    amStopped = action === 'stop';
    amEvents.push({ t: elapsedMs() / 1000, action });
  };
  const amTimers = [];
  if (s.amDownS > 0 && s.amPeriodS > 0) {
    for (let t = s.amFirstS; t < s.durationS; t += s.amPeriodS) {
      amTimers.push(setTimeout(() => amSignal('stop'), t * 1000));
      amTimers.push(setTimeout(() => amStopped && amSignal('cont'), (t + s.amDownS) * 1000));
    }
  }

  // Sampling.
  const clockTick = os.constants?.CLK_TCK || 100;
  const relayCpuTicks = () => {
    const fields = fs.readFileSync(`/proc/${s.relayPid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]);
  };
  const samples = [];
  const header = ['t', 'phase', 'sent_per_s', 'answered_per_s', 'ok_per_s', 'p50_ms', 'p99_ms', 'p99_send_ms', 'lag_p99_ms',
    'outstanding', 'rss_mb', 'fds', 'queue_alertmanager', 'queue_receiver', 'queue_total', 'relay_cpu_pct', 'gen_cpu_pct', 'am_up', 'load1', 'ingest_conns', 'fds_other'];
  const csv = fs.openSync(s.samples, 'w');
  fs.writeSync(csv, `${header.join(',')}\n`);
  let last = { t: 0, issued: 0, answered: 0, ok: 0, relayCpu: relayCpuTicks(), genCpu: process.cpuUsage() };
  let phase = 'load';

  async function sample() {
    const t = elapsedMs() / 1000;
    const dt = t - last.t;
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${s.relayPid}/status`, 'utf8'))[1]);
    const fds = fs.readdirSync(`/proc/${s.relayPid}/fd`).length;
    // The generator's connections to the relay (each one FD there): the pool grows while answers
    // are slow and shrinks when the relay closes idle ones (server.idleTimeout), so the relay's
    // FDs less these are what a leak would show in.
    const pooled = (group) => Object.values(group).reduce((a, list) => a + list.length, 0);
    const conns = pooled(agent.sockets) + pooled(agent.freeSockets);
    const relayCpu = relayCpuTicks();
    const genCpu = process.cpuUsage();
    const { status, text } = await getText(`${s.adminUrl}/metrics`, 4000);
    const queue = status === 200
      ? { alertmanager: metricSum(text, 'fluxrelay_queue_depth', 'target="alertmanager"'), receiver: metricSum(text, 'fluxrelay_queue_depth', 'target="receiver"') }
      : { alertmanager: NaN, receiver: NaN };
    const sched = interval.sched.sort((a, b) => a - b);
    const sendLat = interval.send.sort((a, b) => a - b);
    const lag = interval.lag.sort((a, b) => a - b);
    const row = {
      t: t.toFixed(1),
      phase,
      sent_per_s: ((issued - last.issued) / dt).toFixed(1),
      answered_per_s: ((answered - last.answered) / dt).toFixed(1),
      ok_per_s: ((okTotal() - last.ok) / dt).toFixed(1),
      p50_ms: quantile(sched, 0.5).toFixed(3),
      p99_ms: quantile(sched, 0.99).toFixed(3),
      p99_send_ms: quantile(sendLat, 0.99).toFixed(3),
      lag_p99_ms: quantile(lag, 0.99).toFixed(3),
      outstanding: issued - answered,
      rss_mb: (rssKb / 1024).toFixed(2),
      fds,
      queue_alertmanager: queue.alertmanager,
      queue_receiver: queue.receiver,
      queue_total: queue.alertmanager + queue.receiver,
      relay_cpu_pct: ((100 * (relayCpu - last.relayCpu)) / clockTick / dt).toFixed(1),
      gen_cpu_pct: ((100 * (genCpu.user - last.genCpu.user + genCpu.system - last.genCpu.system)) / 1e6 / dt).toFixed(1),
      am_up: amStopped ? 0 : 1,
      load1: os.loadavg()[0].toFixed(2),
      ingest_conns: conns,
      fds_other: fds - conns,
    };
    samples.push(row);
    fs.writeSync(csv, `${header.map((k) => row[k]).join(',')}\n`);
    last = { t, issued, answered, ok: okTotal(), relayCpu, genCpu };
    interval = { sched: [], send: [], lag: [] };
  }
  const okTotal = () => {
    let n = 0;
    for (const [code, count] of Object.entries(statuses)) if (code >= 200 && code < 300) n += count;
    return n;
  };

  let sampling = Promise.resolve();
  const sampler = setInterval(() => {
    sampling = sampling.then(sample).catch((error) => console.error(`soak: sample: ${error.message}`));
  }, s.sampleS * 1000);

  // The open loop: every 2 ms, send whatever is due by now.
  const loadStart = new Date();
  const loadAvgStart = os.loadavg();
  await new Promise((resolve) => {
    const ticker = setInterval(() => {
      const due = Math.min(total, Math.floor((elapsedMs() * s.rate) / 1000) + 1);
      while (issued < due) send(issued++);
      if (issued >= total) {
        clearInterval(ticker);
        resolve();
      }
    }, 2);
  });
  const loadSeconds = elapsedMs() / 1000;
  const loadAvgEnd = os.loadavg();
  console.error(`soak: ${issued} requests sent in ${loadSeconds.toFixed(1)} s; waiting for the answers`);
  for (const timer of amTimers) clearTimeout(timer);

  // Drain: the last answers, Alertmanager running, both queues empty.
  const answersDeadline = Date.now() + s.requestTimeoutMs + 5000;
  while (answered < issued && Date.now() < answersDeadline) await delay(100);
  const lastAnswerS = elapsedMs() / 1000;
  phase = 'drain';
  if (amStopped) amSignal('cont');
  const drainStart = elapsedMs() / 1000;
  const drainDeadline = Date.now() + s.drainTimeoutS * 1000;
  let drained = false;
  while (Date.now() < drainDeadline) {
    const { status, text } = await getText(`${s.adminUrl}/metrics`, 4000);
    if (status === 200 && metricSum(text, 'fluxrelay_queue_depth') === 0) {
      drained = true;
      break;
    }
    await delay(500);
  }
  const drainS = elapsedMs() / 1000 - drainStart;
  console.error(`soak: queues ${drained ? 'empty' : 'NOT empty'} ${drainS.toFixed(1)} s after the load`);
  await delay(2000);
  clearInterval(sampler);
  await sampling;
  await sample();
  fs.closeSync(csv);
  agent.destroy();
  const relayMetrics = (await getText(`${s.adminUrl}/metrics`)).text;

  // The final count, at the peers.
  // Alertmanager: every alert of this run, by its soak_seq label, in shards of namespaces of up
  // to ~60,000 alerts each (a 20-minute run leaves 270,000: one answer for all would be a string
  // of ~180 MB; each query costs Alertmanager a pass over all its alerts, ~4 s at 270,000).
  const alertsOf = new Uint16Array(total);
  let alertsFound = 0;
  let foreignAlerts = 0;
  const shards = Math.max(1, Math.min(NAMESPACES, Math.ceil((total * 0.75) / 60_000)));
  const checkStart = Date.now();
  for (let shard = 0; shard < shards; shard += 1) {
    const names = [];
    for (let ns = shard; ns < NAMESPACES; ns += shards) names.push(String(ns).padStart(2, '0'));
    const params = new URLSearchParams();
    params.append('filter', `namespace=~"team-(${names.join('|')})"`);
    const { status, text } = await getText(`${s.alertmanagerUrl}/api/v2/alerts?${params}`, 600_000);
    if (status !== 200) throw new Error(`Alertmanager /api/v2/alerts → ${status}`);
    for (const alert of JSON.parse(text)) {
      const seq = Number(alert.labels.soak_seq);
      if (!Number.isInteger(seq) || seq < 0 || seq >= total) {
        foreignAlerts += 1;
        continue;
      }
      alertsOf[seq] += 1;
      alertsFound += 1;
    }
  }
  console.error(`soak: ${alertsFound} alerts read from Alertmanager in ${shards} queries, ${((Date.now() - checkStart) / 1000).toFixed(1)} s`);
  const amMetrics = (await getText(`${s.alertmanagerUrl}/metrics`)).text;
  const amReceived = metricSum(amMetrics, 'alertmanager_alerts_received_total');
  const amInvalid = metricSum(amMetrics, 'alertmanager_alerts_invalid_total');
  // The Receiver stand-in: reconciles per delivery id.
  const receiverStats = JSON.parse((await getText(`${s.receiverUrl}/soak/stats`, 60_000)).text);
  const reconcilesOf = new Uint16Array(total);
  let foreignReconciles = 0;
  for (const [id, count] of Object.entries(receiverStats.deliveries)) {
    const seq = seqOfDelivery(id);
    if (!id.startsWith(`${run}-`) || !(seq >= 0 && seq < total)) {
      foreignReconciles += count;
      continue;
    }
    reconcilesOf[seq] += count;
  }

  const tally = { flux_error: {}, flux_info: {}, github: {} };
  for (const t of Object.values(tally)) Object.assign(t, { sent: 0, accepted: 0, rejected503: 0, otherStatus: 0, errors: 0, lost: 0, deliveredUnacknowledged: 0, distinctDelivered: 0 });
  const lostExamples = [];
  for (let seq = 0; seq < total; seq += 1) {
    const kind = kindOf(seq);
    const t = tally[kind === 'github' ? 'github' : kind === 'info' ? 'flux_info' : 'flux_error'];
    t.sent += 1;
    const delivered = kind === 'github' ? reconcilesOf[seq] > 0 : alertsOf[seq] > 0;
    if (delivered) t.distinctDelivered += 1;
    switch (outcome[seq]) {
      case 1:
        t.accepted += 1;
        if (!delivered) {
          t.lost += 1;
          if (lostExamples.length < 20) lostExamples.push({ seq, kind });
        }
        break;
      case 2: t.rejected503 += 1; break;
      case 3: t.otherStatus += 1; break;
      default: t.errors += 1;
    }
    if (outcome[seq] !== 1 && delivered) t.deliveredUnacknowledged += 1;
  }
  const sum = (key) => Object.values(tally).reduce((a, t) => a + t[key], 0);
  // One alert per event: Alertmanager merges a re-sent alert into the one it has (same labels), so
  // the alerts it received beyond the distinct ones are the duplicate deliveries.
  const fluxDistinct = tally.flux_error.distinctDelivered + tally.flux_info.distinctDelivered;
  const duplicates = {
    alertmanager: amReceived - fluxDistinct - foreignAlerts,
    receiver: receiverStats.reconciles - tally.github.distinctDelivered - foreignReconciles,
  };

  const all = (arr) => Array.from(arr).filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  const sched = all(latSched);
  const sendLat = all(latSend);
  const loadRows = samples.filter((r) => r.phase === 'load' && Number(r.t) >= s.warmupS);
  const xsHours = loadRows.map((r) => Number(r.t) / 3600);
  const rssFit = fit(xsHours, loadRows.map((r) => Number(r.rss_mb)));
  const fdFit = fit(xsHours, loadRows.map((r) => Number(r.fds)));
  const fdOtherFit = fit(xsHours, loadRows.map((r) => Number(r.fds_other)));
  const lagAll = samples.filter((r) => r.phase === 'load').map((r) => Number(r.lag_p99_ms)).filter((v) => !Number.isNaN(v));
  const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const loadSamples = samples.filter((r) => r.phase === 'load');

  const summary = {
    run,
    // The scratch folder's paths are this run's only: left out.
    settings: Object.fromEntries(Object.entries(s).filter(([, value]) => !(typeof value === 'string' && value.startsWith('/')))),
    started: loadStart.toISOString(),
    machine: { nproc: os.availableParallelism(), kernel: os.release(), cpu: os.cpus()[0]?.model, memTotalMiB: Math.round(os.totalmem() / 2 ** 20), loadAvgStart, loadAvgEnd },
    total,
    loadSeconds,
    lastAnswerS,
    achievedSendRate: issued / loadSeconds,
    achievedAcceptRate: sum('accepted') / lastAnswerS, // until the last answer came
    sent: sum('sent'),
    accepted: sum('accepted'),
    rejected503: sum('rejected503'),
    otherStatus: sum('otherStatus'),
    errors: sum('errors'),
    statuses,
    errorKinds: errors,
    tally,
    lost: sum('lost'),
    lostExamples,
    deliveredUnacknowledged: sum('deliveredUnacknowledged'),
    duplicates,
    alertmanager: { received: amReceived, invalid: amInvalid, alertsFound, foreignAlerts, maxAlertsPerEvent: alertsOf.reduce((most, n) => Math.max(most, n), 0) },
    receiver: { reconciles: receiverStats.reconciles, refused: receiverStats.refused, foreignReconciles },
    relayDropped: metricSum(relayMetrics, 'fluxrelay_events_dropped_total'),
    relayDeadLetters: metricSum(relayMetrics, 'fluxrelay_dead_letters'),
    relayDeliveries: relayMetrics.split('\n').filter((l) => l.startsWith('fluxrelay_deliveries_total{')),
    drained,
    drainS,
    latencyMs: {
      p50: quantile(sched, 0.5), p90: quantile(sched, 0.9), p99: quantile(sched, 0.99), p999: quantile(sched, 0.999), max: sched.at(-1),
      sendP50: quantile(sendLat, 0.5), sendP99: quantile(sendLat, 0.99),
    },
    generator: { lagP99MeanMs: mean(lagAll), lagP99MaxMs: lagAll.reduce((most, n) => Math.max(most, n), 0), cpuPctMean: mean(loadSamples.map((r) => Number(r.gen_cpu_pct))) },
    relayCpuPctMean: mean(loadSamples.map((r) => Number(r.relay_cpu_pct))),
    relayCpuPctAmDown: mean(loadSamples.filter((r) => r.am_up === 0).map((r) => Number(r.relay_cpu_pct))),
    relayCpuPctAmUp: mean(loadSamples.filter((r) => r.am_up === 1).map((r) => Number(r.relay_cpu_pct))),
    relayRetries: metricSum(relayMetrics, 'fluxrelay_deliveries_total', 'outcome="retry"'),
    rss: { slopeMbPerHour: rssFit.slope, r2: rssFit.r2, n: rssFit.n, firstMb: Number(loadRows[0]?.rss_mb), lastMb: Number(loadRows.at(-1)?.rss_mb), maxMb: Math.max(...samples.map((r) => Number(r.rss_mb))) },
    fds: { slopePerHour: fdFit.slope, r2: fdFit.r2, n: fdFit.n, first: Number(loadRows[0]?.fds), last: Number(loadRows.at(-1)?.fds), max: Math.max(...samples.map((r) => Number(r.fds))),
      otherSlopePerHour: fdOtherFit.slope, otherR2: fdOtherFit.r2, otherFirst: Number(loadRows[0]?.fds_other), otherLast: Number(loadRows.at(-1)?.fds_other),
      ingestConnsMax: Math.max(...samples.map((r) => Number(r.ingest_conns))) },
    outstandingMax: Math.max(...samples.map((r) => Number(r.outstanding))),
    queueMax: Math.max(...samples.map((r) => Number(r.queue_total)).filter((v) => !Number.isNaN(v))),
    amEvents,
  };
  fs.writeFileSync(s.summary, `${JSON.stringify(summary, null, 2)}\n`);
  console.error(`soak: accepted ${summary.accepted}/${summary.sent}, lost ${summary.lost}, duplicates ${JSON.stringify(duplicates)}`);
}

// ---------------------------------------------------------------------------------------------
// bench/soak.md

function runReport(summaryFile) {
  const r = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
  const s = r.settings;
  const n = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? '–' : Number(v).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
  const signed = (v, digits) => (Number.isNaN(v) ? '–' : `${v >= 0 ? '+' : ''}${n(v, digits)}`);
  // Which side held the rate back: the generator when it could not send on schedule, the relay
  // when requests piled up unanswered (or it refused them). Tails come from either, and on a
  // shared machine from neither alone: both numbers are given.
  const reached = r.achievedSendRate >= 0.98 * s.rate && r.achievedAcceptRate >= 0.98 * s.rate;
  const maxOutstanding = r.outstandingMax;
  const tails = `latency tails: the generator's own lag behind its schedule (p99 per ${s.sampleS} s interval, mean ${n(r.generator.lagP99MeanMs, 1)} ms, max ${n(r.generator.lagP99MaxMs, 0)} ms) against the relay's answer time from socket send (p99 ${n(r.latencyMs.sendP99, 2)} ms overall), at most ${n(maxOutstanding)} unanswered at a sample`;
  let bottleneck;
  if (reached && r.generator.lagP99MaxMs <= 1000) bottleneck = `Neither held the rate: ${n(r.achievedSendRate, 1)}/s sent and ${n(r.achievedAcceptRate, 1)}/s accepted of ${s.rate}/s. ${tails}.`;
  else if (r.achievedSendRate < 0.98 * s.rate || r.generator.lagP99MaxMs > 1000) bottleneck = `The generator: it sent ${n(r.achievedSendRate, 1)}/s of ${s.rate}/s, up to ${n(r.generator.lagP99MaxMs, 0)} ms behind its schedule (CPU ${n(r.generator.cpuPctMean, 0)} % of one CPU on average). ${tails}.`;
  else bottleneck = `The relay: ${n(r.achievedSendRate, 1)}/s sent but ${n(r.achievedAcceptRate, 1)}/s accepted (${n(r.rejected503)} answered 503, ${n(r.errors)} without an answer). ${tails}.`;
  const stops = [];
  for (let i = 0; i < r.amEvents.length; i += 1) {
    if (r.amEvents[i].action !== 'stop') continue;
    const cont = r.amEvents.slice(i + 1).find((e) => e.action === 'cont');
    stops.push(`${n(r.amEvents[i].t, 0)}–${cont ? n(cont.t, 0) : '?'} s`);
  }
  const t = r.tally;
  const row = (name, x, lostKey = 'lost') => `| ${name} | ${n(x.sent)} | ${n(x.accepted)} | ${n(x.rejected503)} | ${n(x.otherStatus + x.errors)} | ${n(x[lostKey])} | ${n(x.deliveredUnacknowledged)} |`;
  const short = s.durationS < 1200;
  return `# fluxrelay soak (bench/soak.sh)
${short ? `\n> **A short run (${n(s.durationS / 60, 1)} minutes), not the 20-minute soak**: trends over so little time say little; slopes are noisy.\n` : ''}
Taken ${r.started.replace('T', ' ').slice(0, 16)} UTC by \`bench/soak.sh\`: ${n(s.durationS / 60, 1)} minutes at ${s.rate} requests/s
(open loop: each request is sent at its scheduled time whether or not earlier ones were answered),
everything on loopback on one machine, the load generator (Node) sharing the CPUs with the relay
and its peers. Alertmanager was stopped (SIGSTOP) for ${s.amDownS} s every ${s.amPeriodS} s, from ${s.amFirstS} s on: ${stops.join(', ') || 'never'}.

**Machine**: ${r.machine.cpu}, ${r.machine.nproc} CPUs (nproc), ${n(r.machine.memTotalMiB)} MiB, Linux ${r.machine.kernel}; load average
${n(r.machine.loadAvgStart[0], 2)} at the start, ${n(r.machine.loadAvgEnd[0], 2)} at the end of the load.
**fluxrelay**: ${s.relayVersion}, \`${s.relayBinaryDesc}\`, SQLite spool (\`storage.sync: normal\`).
**Traffic**: per 20 requests, 10 signed Flux error events, 5 Flux info events (both cycling over
3,000 objects in 40 namespaces, each event with a revision and a \`soak_seq\` label of its own:
one distinct alert each, never a dedup duplicate) and 5 signed GitHub push webhooks (each its own
delivery id), routed to Alertmanager and to a Flux Receiver stand-in.

## Result

| | |
|---|---|
| rate achieved | ${n(r.achievedSendRate, 1)} requests/s sent (target ${s.rate}), ${n(r.achievedAcceptRate, 1)}/s accepted |
| events sent / accepted (2xx) / 503 / other | ${n(r.sent)} / ${n(r.accepted)} / ${n(r.rejected503)} / ${n(r.otherStatus + r.errors)}${Object.keys(r.errorKinds).length ? ` (${Object.entries(r.errorKinds).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''} |
| **lost** (answered 2xx, never reached its peer) | **${n(r.lost)}** |
| **duplicate deliveries** (beyond one per event) | **${n(r.duplicates.alertmanager + r.duplicates.receiver)}**: Alertmanager ${n(r.duplicates.alertmanager)} (${n(r.alertmanager.received)} alerts received for ${n(t.flux_error.distinctDelivered + t.flux_info.distinctDelivered)} distinct), Receiver ${n(r.duplicates.receiver)} (${n(r.receiver.reconciles)} reconciles for ${n(t.github.distinctDelivered)} deliveries) |
| latency, from each request's scheduled send to its answer | p50 ${n(r.latencyMs.p50, 2)} ms, p90 ${n(r.latencyMs.p90, 2)} ms, p99 ${n(r.latencyMs.p99, 2)} ms, p99.9 ${n(r.latencyMs.p999, 2)} ms, max ${n(r.latencyMs.max, 1)} ms |
| latency, from handing the request to a socket | p50 ${n(r.latencyMs.sendP50, 2)} ms, p99 ${n(r.latencyMs.sendP99, 2)} ms |
| RSS slope after ${s.warmupS} s warm-up | ${signed(r.rss.slopeMbPerHour, 2)} MB/hour (least squares over ${r.rss.n} samples, R² ${n(r.rss.r2, 2)}); ${n(r.rss.firstMb, 1)} → ${n(r.rss.lastMb, 1)} MB, max ${n(r.rss.maxMb, 1)} MB |
| open FDs slope after warm-up | ${signed(r.fds.slopePerHour, 1)} per hour (R² ${n(r.fds.r2, 2)}); ${n(r.fds.first)} → ${n(r.fds.last)}, max ${n(r.fds.max)}. Less the generator's connections (up to ${n(r.fds.ingestConnsMax)}, opened while answers were slow, closed by the relay after \`idleTimeout\`): ${signed(r.fds.otherSlopePerHour, 1)} per hour (R² ${n(r.fds.otherR2, 2)}); ${n(r.fds.otherFirst)} → ${n(r.fds.otherLast)} |
| queue depth, max | ${n(r.queueMax)} deliveries; after the load the queues were ${r.drained ? `empty ${n(r.drainS, 1)} s later` : `**not empty** after ${n(r.drainS, 0)} s`} |
| CPU, mean over the load | fluxrelay ${n(r.relayCpuPctMean, 1)} % of one CPU (${n(r.relayCpuPctAmUp, 1)} % in samples with Alertmanager running, ${n(r.relayCpuPctAmDown, 1)} % with it stopped), load generator ${n(r.generator.cpuPctMean, 1)} % |
| bottleneck | ${bottleneck} |

| events | sent | 2xx | 503 | other / no answer | lost | delivered without a 2xx |
|---|---|---|---|---|---|---|
${row('Flux error', t.flux_error)}
${row('Flux info', t.flux_info)}
${row('GitHub push', t.github)}

How the count is exact: every Flux event is one alert with a label set of its own (\`soak_seq\`),
read back from Alertmanager's \`/api/v2/alerts\` (Alertmanager's \`resolve_timeout\` outlasts the
run, so none has ended); every push has its own \`X-GitHub-Delivery\`, and the Receiver stand-in
counts the reconciles per id. A re-sent alert merges into the one Alertmanager has, so duplicates
there are \`alertmanager_alerts_received_total\` minus the distinct alerts; the stand-in counts
its duplicates directly. A duplicate is at-least-once at work: a request Alertmanager read only
after its SIGCONT, when the relay had already timed out on it (\`timeout: 5s\`) and scheduled the
batch again (fluxrelay counted ${n(r.relayRetries)} delivery attempts as \`retry\`). "Delivered
without a 2xx": the relay stored the event but the generator saw no 2xx (a timeout or reset),
which is not a loss. fluxrelay's own view: events dropped by filters or dedup
${n(r.relayDropped)}, dead letters ${n(r.relayDeadLetters)}.

## Over time (every ${s.sampleS} s; grey: Alertmanager stopped)

![RSS](soak/rss.png)
![open file descriptors](soak/fds.png)
![p99 latency](soak/p99.png)
![queue depth](soak/queue.png)

The samples are in [soak/samples.csv](soak/samples.csv).
`;
}

if (mode === 'receiver') runReceiver(args[0], args[1]);
else if (mode === 'load') {
  runLoad(args[0]).then(
    () => process.exit(0),
    (error) => {
      console.error(`soak: ${error.stack || error}`);
      process.exit(1);
    },
  );
} else if (mode === 'report') process.stdout.write(runReport(args[0]));
else {
  console.error('usage: soak-load.mjs receiver PORT_FILE TOKEN_FILE | load SETTINGS.json | report SUMMARY.json');
  process.exit(2);
}
