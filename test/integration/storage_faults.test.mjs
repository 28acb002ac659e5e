// The SQLite spool's writes fail under load (libfiu's POSIX wrappers, driven at run time through
// fiu-ctrl): every event answered 2xx still reaches Alertmanager once the disk works again, every
// request gets an answer, and /readyz says whether the spool can be written.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { baseConfig, cleanup, fluxEvent, makeTempDir, relayIsSanitized, signFlux, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

const execFileAsync = promisify(execFile);

// libfiu draws its random failures from its own PRNG, which fiu_init() seeds from FIU_PRNG_SEED
// when set (from the clock otherwise). The seed fixes the sequence of draws; which write takes
// which draw still depends on how the threads interleave and how large each group commit is, so
// a run is repeatable in its rates, not call for call.
const FIU_PRNG_SEED = '1213';
const EIO = 5;
const ENOSPC = 28;

// The failure points are process-wide, so they are chosen by what only the spool calls. SQLite
// (Debian's libsqlite3) writes the database, its -wal and -shm files with pwrite64 only, syncs
// them with fdatasync (fsync is named too, for a SQLite built without fdatasync), and opens them
// with open64. The relay's HTTP never goes through these: Asio's sockets use sendmsg/recvmsg.
// write() is left alone: Asio's signal pipe and eventfd wake-ups use it, and a failed write()
// there would swallow a SIGTERM. SQLite keeps its files open, so `open` fails only a reopen of
// the spool, or the relay's own config and secret files, read at start and on a reload (a failed
// reload keeps the old config), neither of which happens while the faults are on.
const WRITE_POINTS = ['posix/io/rw/pwrite', 'posix/io/sync/fdatasync', 'posix/io/sync/fsync'];
const ALL_POINTS = [...WRITE_POINTS, 'posix/io/oc/open'];
// Per call: a group commit makes several pwrites and, with sync: full, a sync, so these fail
// a good share of the transactions in a burst while letting others through.
const PROBABILITY = { 'posix/io/rw/pwrite': 0.04, 'posix/io/sync/fdatasync': 0.2, 'posix/io/sync/fsync': 0.2, 'posix/io/oc/open': 0.2 };

const BURST = 240;
const CONCURRENCY = 16;
// A bound on each request: a spool stuck on a failed disk must not hold a sender.
const CLIENT_TIMEOUT_MS = 10_000;
const PHASE_TIMEOUT_MS = 20_000;
const DELIVERY_TIMEOUT_MS = 30_000;

function findExecutable(name) {
  for (const dir of [...(process.env.PATH || '').split(path.delimiter), '/usr/bin']) {
    const candidate = path.join(dir, name);
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  return null;
}

function numberedEvent(run, seq) {
  return fluxEvent({
    involvedObject: { name: `app-${seq}` },
    message: `reconciliation failed (${run}/${seq})`,
    reason: 'ReconciliationFailed',
    metadata: { run, seq: String(seq) },
  });
}

// One signed post with its own bound: {status} or {error} when nothing answered in time.
async function post(relay, event) {
  const body = JSON.stringify(event);
  try {
    const response = await fetch(`${relay.url}/flux/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Signature': signFlux(body, relay.hmacKey) },
      body,
      signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
    });
    await response.text();
    return { status: response.status };
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
}

async function readyz(relay) {
  try {
    return (await fetch(`${relay.adminUrl}/readyz`, { signal: AbortSignal.timeout(5_000) })).status;
  } catch {
    return 0;
  }
}

// Posts events first..first+count-1, `concurrency` at a time; every outcome by sequence number.
async function burst(relay, run, first, count, concurrency = CONCURRENCY) {
  const outcomes = new Map();
  let next = first;
  async function worker() {
    while (next < first + count) {
      const seq = next++;
      outcomes.set(seq, await post(relay, numberedEvent(run, seq)));
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return outcomes;
}

// Of a relay or an Alertmanager from the harness.
function alive(peer) {
  return peer.process.exitCode === null && peer.process.signalCode === null;
}

describe('storage faults injected with libfiu', { skip: skipReason() }, () => {
  let am;

  before(async () => {
    am = await startAlertmanager();
  });
  after(cleanup);

  for (const sync of ['normal', 'full']) {
    it(`storage.sync: ${sync}: no acknowledged event is lost, no request hangs, /readyz tells the truth`, async (t) => {
      // A failed test before this one may have left Alertmanager stopped.
      if (!alive(am)) await am.start();
      const fifoDir = await makeTempDir('fluxrelay-it-fiu-');
      const fifoPrefix = path.join(fifoDir, 'ctrl');
      const config = baseConfig({ alertmanagerUrl: am.url });
      config.storage = { path: './data', sync };
      const relay = await startRelay(config, {
        logLevel: 'info',
        wrapper: [findExecutable('fiu-run'), '-x', '-f', fifoPrefix],
        env: { FIU_PRNG_SEED },
      });
      const fiu = async (...commands) => {
        const args = ['-f', fifoPrefix, ...commands.flatMap((command) => ['-c', command]), String(relay.process.pid)];
        const { stdout, stderr } = await execFileAsync(findExecutable('fiu-ctrl'), args, { timeout: 10_000 });
        assert.doesNotMatch(stdout + stderr, /error|unknown/i, `fiu-ctrl ${args.join(' ')}`);
      };
      // libfiu refuses to disable a point that is not enabled: remember which are.
      let enabled = [];
      const enable = async (errno, points, { always = false } = {}) => {
        await fiu(
          ...points.map((point) =>
            always ? `enable name=${point},failinfo=${errno}` : `enable_random name=${point},probability=${PROBABILITY[point]},failinfo=${errno}`,
          ),
        );
        enabled = points;
      };
      const disableAll = async () => {
        if (enabled.length > 0) await fiu(...enabled.map((point) => `disable name=${point}`));
        enabled = [];
      };

      const run = uniqueSuffix();
      let earlierLogs = '';
      let acked = new Set();
      const record = (phase, outcomes) => {
        const statuses = {};
        for (const [seq, outcome] of outcomes) {
          assert.ok(!outcome.error, `${phase}: event ${seq} got no answer: ${outcome.error}`);
          assert.ok([202, 503].includes(outcome.status), `${phase}: event ${seq} answered ${outcome.status}`);
          statuses[outcome.status] = (statuses[outcome.status] || 0) + 1;
          if (outcome.status === 202) acked.add(seq);
        }
        return statuses;
      };
      // A relay may choose to exit on a storage it cannot trust (it is then started again on the
      // same folder), but never crash.
      const keepRunning = async (phase) => {
        if (alive(relay)) return;
        const exit = await relay.exited;
        assert.equal(exit.signal, null, `the relay crashed during ${phase}: ${JSON.stringify(exit)}\n${relay.log().slice(-4000)}`);
        t.diagnostic(`the relay exited during ${phase} (${JSON.stringify(exit)}); started again`);
        earlierLogs += relay.log();
        enabled = [];
        await relay.restart();
      };
      // Alertmanager keeps alerts in memory only: what it was sent is checked before it stops.
      const allDelivered = async (what) => {
        let missing = [...acked];
        await waitFor(
          async () => {
            const delivered = new Set((await am.alerts({ run })).map((alert) => Number(alert.labels.seq)));
            missing = missing.filter((n) => !delivered.has(n));
            return missing.length === 0;
          },
          { timeoutMs: DELIVERY_TIMEOUT_MS, what: `all ${acked.size} events acknowledged ${what} in Alertmanager` },
        ).catch((error) => {
          error.message += `\nnever delivered: ${missing.join(', ')}`;
          throw error;
        });
        acked = new Set();
      };
      const phases = {};
      // Random faults during a burst, then back to work by itself once writes succeed.
      const randomFaults = async (name, errno, first) => {
        await enable(errno, ALL_POINTS);
        phases[name] = record(name, await burst(relay, run, first, BURST));
        await keepRunning(`the ${name} burst`);
        await disableAll();
        assert.ok(phases[name][503] > 0, `${name}: the faults failed no request: ${JSON.stringify(phases[name])}`);
        await waitFor(async () => (await readyz(relay)) === 200, { timeoutMs: PHASE_TIMEOUT_MS, what: `/readyz 200 after the ${name} faults` });
        return first + BURST;
      };

      // The spool works before the faults.
      assert.deepEqual(record('before', await burst(relay, run, 0, 1, 1)), { 202: 1 });

      // EIO with Alertmanager up: claims and settlements meet the faults too.
      let seq = await randomFaults('EIO', EIO, 1);
      await allDelivered('before and during the EIO faults');

      // A full disk with Alertmanager down: the backlog must be on disk, not only in memory.
      await am.stop();
      seq = await randomFaults('ENOSPC', ENOSPC, seq);
      t.diagnostic(`answers per burst: ${JSON.stringify(phases)}`);
      const log = earlierLogs + relay.log();
      assert.match(log, /disk I\/O error/, 'EIO reaches SQLite as an I/O error');
      assert.match(log, /database or disk is full/, 'ENOSPC reaches SQLite as a full disk');

      // Every write fails: refused, and not ready, for as long as it lasts.
      await enable(ENOSPC, WRITE_POINTS, { always: true });
      const refused = record('disk full', await burst(relay, run, seq, 8, 4));
      seq += 8;
      assert.deepEqual(refused, { 503: 8 }, 'no event is acknowledged while no write succeeds');
      // A refused event has already made the spool unhealthy: no wait.
      assert.equal(await readyz(relay), 503, '/readyz once a write failed');
      // Through a few failed probes (one a second), /readyz stays 503 and events stay refused.
      // The pause only paces the looking; nothing waits on it.
      const until = Date.now() + 2_500;
      while (Date.now() < until && alive(relay)) {
        assert.equal(await readyz(relay), 503, '/readyz while every write fails');
        assert.deepEqual(record('disk full', await burst(relay, run, seq, 1, 1)), { 503: 1 });
        seq += 1;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await keepRunning('the full disk');
      await disableAll();
      await waitFor(async () => (await readyz(relay)) === 200, { timeoutMs: PHASE_TIMEOUT_MS, what: '/readyz 200 once writes succeed' });
      assert.deepEqual(record('after', await burst(relay, run, seq, 8, 4)), { 202: 8 });
      seq += 8;

      // What was acknowledged under faults survives the process: kill -9, start again on the
      // same folder, and only then bring Alertmanager back.
      await relay.kill();
      await relay.restart();
      await am.start();
      await allDelivered('during the ENOSPC faults and after them, through kill -9');
      await relay.stop();
    });
  }
});

function skipReason() {
  if (process.env.FLUXRELAY_IT_STORAGE === 'redis') return 'faults are injected into the SQLite spool';
  // libfiu wraps malloc too, which AddressSanitizer must own.
  if (relayIsSanitized) return 'libfiu and AddressSanitizer both interpose malloc';
  if (!findExecutable('fiu-run') || !findExecutable('fiu-ctrl')) {
    throw new Error('fiu-run and fiu-ctrl not found; run scripts/install-deps.sh (fiu-utils, libfiu-dev)');
  }
  return false;
}
