// Several replicas on one Redis (storage.redis): two real fluxrelay processes, one real
// redis-server and a real Alertmanager behave as one relay — shared dedup, shared GitHub delivery
// ids, a killed replica's work finished by the other, and Redis going away and coming back (with
// its data, or without it).
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { sign } from '@octokit/webhooks-methods';

import { startFluxReceiver } from './flux_fakes.mjs';
import { cleanup, fluxEvent, postEvent, request, startAlertmanager, startRedis, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

const WEBHOOK_SECRET = 'github-webhook-secret-for-tests';
const RECEIVER_TOKEN = 'flux-receiver-token-for-tests';
const RECEIVER = { name: 'github-webhook', namespace: 'flux-system' };
// Retries wait behind backoff and the circuit breaker after an outage: a wide bound.
const RECOVERY_TIMEOUT_MS = 90_000;

function replicaConfig({ redisUrl, keyPrefix, alertmanagerUrl, receiverUrl }) {
  const retry = { initialInterval: '100ms', maxInterval: '1s' };
  return {
    storage: { redis: { url: redisUrl, keyPrefix, claimIdle: '3s', timeout: '2s' } },
    sources: [
      { name: 'flux', type: 'flux', path: '/flux/events', hmacKeyFile: './flux-hmac' },
      { name: 'github', type: 'github', path: '/github/webhook', secretFile: './github-secret', events: ['ping', 'push'] },
    ],
    targets: [
      { name: 'alertmanager', type: 'alertmanager', address: `${alertmanagerUrl}/api/v2/alerts`, timeout: '5s', retry },
      { name: 'receiver', type: 'flux-receiver', address: receiverUrl, receiver: RECEIVER, tokenFile: './receiver-token', timeout: '5s', retry },
    ],
    routes: [
      { name: 'all-to-alertmanager', source: 'flux', targets: ['alertmanager'] },
      { name: 'reconcile-on-push', source: 'github', events: ['push'], branches: ['main'], targets: ['receiver'] },
    ],
  };
}

const files = { 'github-secret': WEBHOOK_SECRET, 'receiver-token': RECEIVER_TOKEN };

async function postPush(relay, delivery) {
  const body = JSON.stringify({ ref: 'refs/heads/main', after: 'bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07', repository: { full_name: 'o/r' } });
  return request(`${relay.url}/github/webhook`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-GitHub-Event': 'push',
      'X-GitHub-Delivery': delivery,
      'X-Hub-Signature-256': await sign(WEBHOOK_SECRET, body),
    },
    body,
  });
}

// Sum of a counter's samples whose labels include all of `labels`.
async function counter(relay, name, labels = {}) {
  const text = await (await fetch(`${relay.adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const matches = Object.entries(labels).every(([label, value]) => line.includes(`${label}="${value}"`));
    if (matches) sum += Number(line.split(' ').pop());
  }
  return sum;
}

// Ten events about new objects, posted to the replicas in turn, each answered 202; their names.
async function postToBoth(a, b, prefix) {
  const names = [];
  for (let i = 0; i < 10; i += 1) {
    const name = `${prefix}-${i}-${uniqueSuffix()}`;
    const response = await postEvent(i % 2 ? a : b, '/flux/events', objectEvent(name));
    assert.equal(response.status, 202, response.text);
    names.push(name);
  }
  return names;
}

async function readyStatus(relay) {
  try {
    return (await fetch(`${relay.adminUrl}/readyz`, { signal: AbortSignal.timeout(5_000) })).status;
  } catch {
    return 0;
  }
}

function objectEvent(name) {
  return fluxEvent({ involvedObject: { name }, message: `Health check failed for ${name}`, reason: 'HealthCheckFailed' });
}

// Every name has an alert in Alertmanager; else throws naming the missing ones (waitFor quotes it).
async function allAlerted(am, names) {
  const alerts = await am.alerts();
  const seen = new Set(alerts.map((alert) => alert.labels.name));
  const missing = names.filter((name) => !seen.has(name));
  if (missing.length > 0) throw new Error(`${missing.length} without an alert, e.g. ${missing.slice(0, 5).join(', ')}`);
  return true;
}

describe('two replicas on one Redis', () => {
  let am;
  let redis;
  let receiver;
  let a;
  let b;
  const keyPrefix = `it-${uniqueSuffix()}:`;

  before(async () => {
    [am, redis, receiver] = await Promise.all([
      startAlertmanager(),
      // always: the outage test kills Redis with -9 and expects every acknowledged event back, which
      // everysec does not promise on a busy disk (see the README's persistence table).
      startRedis({ appendOnly: true, appendFsync: 'always' }),
      startFluxReceiver({ token: RECEIVER_TOKEN, ...RECEIVER, events: ['push'] }),
    ]);
    const config = replicaConfig({ redisUrl: redis.url, keyPrefix, alertmanagerUrl: am.url, receiverUrl: receiver.url });
    [a, b] = await Promise.all([startRelay(config, { files }), startRelay(config, { files })]);
  });

  after(async () => {
    try {
      if (receiver) await receiver.stop();
    } finally {
      await cleanup();
    }
  });

  it('the same Flux event posted to both replicas is delivered once (shared dedup)', async () => {
    const name = `shared-dedup-${uniqueSuffix()}`;
    const event = objectEvent(name);
    const [first, second] = await Promise.all([postEvent(a, '/flux/events', event), postEvent(b, '/flux/events', event)]);
    assert.equal(first.status, 202, first.text);
    assert.equal(second.status, 202, second.text);
    await waitFor(async () => (await am.alerts({ name })).length === 1, { what: `the alert for ${name}` });
    // One replica delivered it, the other's route dropped it as a duplicate of the first.
    const delivered = async () => (await counter(a, 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' })) +
      (await counter(b, 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' }));
    const dropped = async () => (await counter(a, 'fluxrelay_events_dropped_total', { route: 'all-to-alertmanager' })) +
      (await counter(b, 'fluxrelay_events_dropped_total', { route: 'all-to-alertmanager' }));
    await waitFor(async () => (await dropped()) === 1, { what: 'one duplicate dropped' });
    assert.equal(await delivered(), 1);
  });

  it('one journal: an event posted to one replica is listed by both, with its delivery and its failing object', async () => {
    const name = `journal-${uniqueSuffix()}`;
    const posted = await postEvent(a, '/flux/events', objectEvent(name));
    assert.equal(posted.status, 202, posted.text);
    const listed = async (relay) => {
      const events = await (await fetch(`${relay.adminUrl}/api/v1/events?limit=500`, { signal: AbortSignal.timeout(5_000) })).json();
      return events.find((event) => event.id === posted.json.id);
    };
    await waitFor(async () => (await listed(b))?.attempts.some((attempt) => attempt.outcome === 'delivered'), { what: 'the delivery listed by the other replica' });
    const [onA, onB] = await Promise.all([listed(a), listed(b)]);
    assert.deepEqual(onA, onB, 'both replicas show the same entry');
    assert.equal(onB.name, name);
    const failing = await (await fetch(`${b.adminUrl}/api/v1/objects`, { signal: AbortSignal.timeout(5_000) })).json();
    assert.ok(failing.some((object) => object.name === name), 'the failing object is listed by the other replica');
  });

  it('a GitHub delivery posted to both replicas triggers one reconcile', async () => {
    const delivery = randomUUID();
    const [first, second] = await Promise.all([postPush(a, delivery), postPush(b, delivery)]);
    const statuses = [first.status, second.status].sort();
    assert.deepEqual(statuses, [200, 202], `${first.text} / ${second.text}`);
    assert.equal([first, second].find((r) => r.status === 200).json?.status, 'duplicate');
    await waitFor(async () => receiver.reconcilesFor([delivery]).length === 1, { what: 'the reconcile' });
    // Give a second reconcile, were there one, the time to arrive: both replicas idle, nothing queued.
    await waitFor(async () => (await counter(a, 'fluxrelay_queue_depth', { target: 'receiver' })) === 0 && (await counter(b, 'fluxrelay_queue_depth', { target: 'receiver' })) === 0, { what: 'empty queues' });
    assert.equal(receiver.reconcilesFor([delivery]).length, 1);
  });

  it('Redis down: 503 and /readyz failing; back: recovery without a restart, nothing acknowledged lost', async () => {
    const acknowledged = await postToBoth(a, b, 'outage-before');
    await redis.kill();
    await waitFor(async () => (await readyStatus(a)) === 503 && (await readyStatus(b)) === 503, { what: '/readyz 503 on both replicas' });
    const refused = await postEvent(a, '/flux/events', objectEvent(`outage-during-${uniqueSuffix()}`));
    assert.equal(refused.status, 503, refused.text);

    await redis.start();
    await waitFor(async () => (await readyStatus(a)) === 200 && (await readyStatus(b)) === 200, { what: '/readyz 200 on both replicas' });
    acknowledged.push(...(await postToBoth(a, b, 'outage-after')));
    await waitFor(() => allAlerted(am, acknowledged), { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 500, what: 'every acknowledged event in Alertmanager' });
  });

  it('Redis restarted without its data: the replicas create their consumer groups again, log and count it', async () => {
    await redis.kill();
    for (const entry of await fs.readdir(redis.dir)) await fs.rm(path.join(redis.dir, entry), { recursive: true, force: true });
    // Checked on disk: once Redis answers, the replicas may write (a lease, the journal) at once.
    assert.deepEqual(await fs.readdir(redis.dir), [], 'Redis starts again with no data');
    await redis.start();
    await waitFor(async () => (await readyStatus(a)) === 200 && (await readyStatus(b)) === 200, { what: '/readyz 200 on both replicas' });

    const acknowledged = await postToBoth(a, b, 'no-data');
    await waitFor(() => allAlerted(am, acknowledged), { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 500, what: 'every event after the loss in Alertmanager' });
    const repairs = async () =>
      (await counter(a, 'fluxrelay_storage_repairs_total', { kind: 'consumer_group' })) +
      (await counter(b, 'fluxrelay_storage_repairs_total', { kind: 'consumer_group' }));
    await waitFor(async () => (await repairs()) >= 1, { what: 'the recreated consumer group counted' });
    assert.ok(`${a.log()}${b.log()}`.includes('is created again'), 'the recreation is logged');
  });

  it('Redis stalled (SIGSTOP) for 10 s in a burst: no post hangs, 503 and /readyz failing meanwhile, everything acknowledged delivered after', async (t) => {
    // A stopped Redis keeps its sockets open and even completes new connects: only the relay's
    // reply timeout (storage.redis.timeout, 2s here) can notice it. Well past that, plus the
    // watchdog's tick: a post taking longer than this hangs.
    const POST_TIMEOUT_MS = 8_000;
    const STALL_MS = 10_000;
    // Phases are set synchronously around the signals, so a post knows exactly when it ran.
    let phase = 'before';
    let stop = false;
    const posts = []; // {name, relay, startedIn, answeredIn, status, ms}; status 0: no answer
    const burst = async (relay, label) => {
      for (let i = 0; !stop; i += 1) {
        const name = `stall-${label}-${i}-${uniqueSuffix()}`;
        const post = { name, relay: label, startedIn: phase, status: 0 };
        const started = Date.now();
        try {
          post.status = (await postEvent(relay, '/flux/events', objectEvent(name), { timeoutMs: POST_TIMEOUT_MS })).status;
        } catch (error) {
          post.error = String(error);
        }
        post.answeredIn = phase;
        post.ms = Date.now() - started;
        posts.push(post);
        // Pacing only: 503s come back at once, and a tight loop would starve the replicas.
        await sleep(25);
      }
    };
    const count = (label, status, answeredIn) => posts.filter((p) => p.relay === label && p.status === status && p.answeredIn === answeredIn).length;
    const bothReady = (status) => async () => (await readyStatus(a)) === status && (await readyStatus(b)) === status;

    const loops = [burst(a, 'a'), burst(b, 'b')];
    let stalledAt;
    try {
      await waitFor(() => count('a', 202, 'before') >= 5 && count('b', 202, 'before') >= 5, { what: 'the burst under way on both replicas' });
      const logOffsets = [a.log().length, b.log().length];
      try {
        redis.pause();
        phase = 'stalled';
        stalledAt = Date.now();
        // Each seen before SIGCONT, or it says nothing about the stall.
        const untilResume = () => Math.max(0, stalledAt + STALL_MS - 500 - Date.now());
        await waitFor(bothReady(503), { timeoutMs: untilResume(), what: '/readyz 503 on both replicas during the stall' });
        await waitFor(() => [a, b].every((relay, i) => relay.log().slice(logOffsets[i]).includes('no reply within')), {
          timeoutMs: untilResume(),
          what: 'both replicas logging their reply timeout',
        });
        await waitFor(() => count('a', 503, 'stalled') >= 1 && count('b', 503, 'stalled') >= 1, { timeoutMs: untilResume(), what: '503s during the stall' });
        assert.ok(Date.now() - stalledAt < STALL_MS, 'the checks above ran while Redis was still stopped');
        await sleep(Math.max(0, stalledAt + STALL_MS - Date.now()));
      } finally {
        phase = 'resumed';
        redis.resume();
      }
      t.diagnostic(`Redis stopped for ${Date.now() - stalledAt} ms`);
      await waitFor(bothReady(200), { what: '/readyz 200 on both replicas after the stall' });
      // Recovered without a restart: both take events again.
      await waitFor(() => count('a', 202, 'resumed') >= 3 && count('b', 202, 'resumed') >= 3, { what: 'both replicas accepting again' });
    } finally {
      stop = true;
      await Promise.all(loops);
    }

    const summary = ['before', 'stalled', 'resumed'].map((p) => {
      const answered = posts.filter((post) => post.answeredIn === p);
      return `${p}: ${answered.filter((post) => post.status === 202).length}×202 ${answered.filter((post) => post.status === 503).length}×503`;
    });
    t.diagnostic(`${posts.length} posts (${summary.join(', ')}), slowest ${Math.max(...posts.map((p) => p.ms))} ms`);
    const odd = posts.filter((p) => p.status !== 202 && p.status !== 503);
    assert.deepEqual(odd, [], 'every post answered in time, with 202 or 503');
    // Redis answered nothing while stopped: a post sent and answered meanwhile cannot be a 202.
    const acceptedInStall = posts.filter((p) => p.startedIn === 'stalled' && p.answeredIn === 'stalled' && p.status !== 503);
    assert.deepEqual(acceptedInStall, [], 'posts made during the stall are refused');

    // Only the 202s are promised; a 503 whose transaction Redis ran after SIGCONT may arrive too.
    const acknowledged = posts.filter((p) => p.status === 202).map((p) => p.name);
    await waitFor(() => allAlerted(am, acknowledged), { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 500, what: 'every acknowledged event in Alertmanager' });
  });

  it('a replica killed with -9 in the middle of a burst: the survivor delivers every acknowledged event', async (t) => {
    // Alertmanager frozen (SIGSTOP: connections open, no answer): deliveries hang in flight, so the
    // replica that dies holds leases the survivor must take over, besides queued retries.
    am.process.kill('SIGSTOP');
    const acknowledged = [];
    const post = async (relay, name) => {
      try {
        const response = await postEvent(relay, '/flux/events', objectEvent(name));
        if (response.status === 202) acknowledged.push(name);
      } catch {
        // the killed replica's connection: not acknowledged, nothing promised
      }
    };
    for (let i = 0; i < 20; i += 1) await post(i % 2 ? a : b, `burst-first-${i}-${uniqueSuffix()}`);
    assert.equal(acknowledged.length, 20);
    // Both replicas hold leases: the group lists two consumers with deliveries pending.
    const stream = `${keyPrefix}q:alertmanager`;
    await waitFor(async () => {
      const [, , , ...consumers] = redis.cli('XPENDING', stream, 'fluxrelay');
      return consumers.length >= 4;
    }, { what: 'leases held by both replicas' });
    const burst = [];
    for (let i = 0; i < 40; i += 1) {
      burst.push(post(i % 2 ? a : b, `burst-${i}-${uniqueSuffix()}`));
      if (i === 20) burst.push(a.kill());
    }
    await Promise.all(burst);
    const before = await counter(b, 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' });
    // The dead replica's leases go to the survivor once idle for claimIdle (3s).
    await waitFor(async () => b.log().includes('from a replica that stopped'), { what: 'the survivor taking over leases' });
    am.process.kill('SIGCONT');
    await waitFor(() => allAlerted(am, acknowledged), { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 500, what: 'every acknowledged event in Alertmanager' });
    // At least once, and no more than once per acknowledged event from the survivor (one attempt
    // each, plus at most one per lease it took over whose first attempt the dead replica made).
    await waitFor(async () => (await counter(b, 'fluxrelay_queue_depth', { target: 'alertmanager' })) === 0, { what: 'the queue drained' });
    const delivered = (await counter(b, 'fluxrelay_deliveries_total', { target: 'alertmanager', outcome: 'delivered' })) - before;
    t.diagnostic(`${acknowledged.length} acknowledged, ${delivered} delivered by the survivor after the kill`);
    assert.ok(delivered >= 1 && delivered <= acknowledged.length, `survivor delivered ${delivered} for ${acknowledged.length} acknowledged`);
  });
});
