// Durable at-least-once delivery: every event that got a 2xx reaches its
// target, through kill -9, target outages, permanent failures and a full disk.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import {
  baseConfig,
  cleanup,
  fluxEvent,
  freePort,
  makeTempDir,
  postEvent,
  relayIsSanitized,
  runRelayCommand,
  startAlertmanager,
  startRelay,
  uniqueSuffix,
  waitFor,
} from './harness.mjs';

const DELIVERY_TIMEOUT_MS = 120_000;

after(cleanup);

// One event per sequence number: distinct labels make distinct alerts in Alertmanager.
function numberedEvent(run, seq) {
  return fluxEvent({
    involvedObject: { name: `app-${seq}` },
    message: `reconciliation failed (${run}/${seq})`,
    reason: 'ReconciliationFailed',
    metadata: { run, seq: String(seq) },
  });
}

// Posts events 0..count-1 with `concurrency` requests in flight; returns the sequence numbers
// that were acknowledged with a 2xx. Requests that fail (the relay was killed) are not.
async function postMany(relay, run, count, concurrency, { onAck = () => {} } = {}) {
  const acked = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      const seq = next++;
      try {
        const response = await postEvent(relay, '/flux/events', numberedEvent(run, seq));
        if (response.status >= 200 && response.status < 300) {
          acked.push(seq);
          onAck(acked.length);
        }
      } catch {
        // connection refused or reset: not acknowledged, so not owed
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return acked;
}

async function deliveredSeqs(am, run) {
  return new Set((await am.alerts({ run })).map((alert) => Number(alert.labels.seq)));
}

function rssKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

describe('durable delivery', () => {
  it('delivers every acknowledged event after kill -9 under load', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url }), { logLevel: 'info' });
    const run = uniqueSuffix();
    const total = 3000;

    let killed = null;
    const acked = await postMany(relay, run, total, 32, {
      // Kill in the middle of the burst, with requests in flight.
      onAck: (count) => {
        if (count === 1000 && !killed) killed = relay.kill();
      },
    });
    await killed;
    assert.ok(acked.length >= 1000 && acked.length < total, `acknowledged ${acked.length} of ${total}`);

    await relay.restart();
    await waitFor(
      async () => {
        const delivered = await deliveredSeqs(am, run);
        return acked.every((seq) => delivered.has(seq));
      },
      { timeoutMs: DELIVERY_TIMEOUT_MS, what: `all ${acked.length} acknowledged events in Alertmanager after kill -9` },
    );
    await relay.stop();
    await am.stop();
  });

  it('keeps the backlog on disk while the target is down, and delivers it when it is back', async () => {
    const am = await startAlertmanager();
    const relay = await startRelay(baseConfig({ alertmanagerUrl: am.url }), { logLevel: 'info' });
    const run = uniqueSuffix();
    await am.stop();

    const first = await postMany(relay, run, 500, 16);
    assert.equal(first.length, 500);
    const rssAfterFirst = rssKiB(relay.process.pid);
    const second = await postMany(relay, `${run}-b`, 4500, 16);
    assert.equal(second.length, 4500);
    const rssAfterAll = rssKiB(relay.process.pid);
    // 4,500 more undelivered events (≈ 4.5 MB of JSON) must not sit in memory.
    if (!relayIsSanitized) {
      assert.ok(rssAfterAll - rssAfterFirst < 16 * 1024, `RSS grew from ${rssAfterFirst} KiB to ${rssAfterAll} KiB`);
    }

    await am.start();
    await waitFor(async () => (await deliveredSeqs(am, run)).size === 500 && (await deliveredSeqs(am, `${run}-b`)).size === 4500, {
      timeoutMs: DELIVERY_TIMEOUT_MS,
      what: 'the whole backlog in Alertmanager',
    });
    await relay.stop();
    await am.stop();
  });

  it('dead-letters a permanent failure with its reason and replays it once the target is fixed', async () => {
    // A target that rejects what it is sent, as a misconfigured receiver does, until fixed.
    let answer = 400;
    const received = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        received.push({ status: answer, body });
        res.writeHead(answer, { 'Content-Type': 'application/json' });
        res.end(answer === 400 ? '{"code":400,"message":"invalid alert"}' : '');
      });
    });
    const port = await freePort();
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const relay = await startRelay(baseConfig({ alertmanagerUrl: `http://127.0.0.1:${port}` }));
      const event = numberedEvent(uniqueSuffix(), 1);
      assert.equal((await postEvent(relay, '/flux/events', event)).status, 202);

      let letters = [];
      await waitFor(
        async () => {
          letters = await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json();
          return letters.length === 1;
        },
        { what: 'one dead letter' },
      );
      assert.equal(letters[0].target, 'alertmanager');
      assert.match(letters[0].reason, /HTTP 400/);
      assert.equal(received.length, 1, 'a permanent failure is not retried');

      const listed = await runRelayCommand(['deadletters', 'list', '--config', relay.configFile]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /HTTP 400/);

      answer = 200;
      const replayed = await runRelayCommand(['deadletters', 'replay', '--all', '--config', relay.configFile]);
      assert.equal(replayed.code, 0, replayed.stderr);
      await waitFor(() => received.some((r) => r.status === 200 && r.body.includes(event.message)), { what: 'the replayed delivery' });
      const after = await (await fetch(`${relay.adminUrl}/api/v1/deadletters`)).json();
      assert.equal(after.length, 0);
      await relay.stop();
    } finally {
      server.close();
    }
  });

  it('answers 503 while its disk is full and recovers by itself', async (t) => {
    if (process.getuid() !== 0) {
      t.skip('needs root to mount a small tmpfs');
      return;
    }
    const mountPoint = await makeTempDir('fluxrelay-it-disk-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint]);
    try {
      const am = await startAlertmanager();
      const config = baseConfig({ alertmanagerUrl: am.url });
      config.storage = { path: path.join(mountPoint, 'spool') };
      const relay = await startRelay(config, { logLevel: 'info' });
      const run = uniqueSuffix();
      assert.equal((await postEvent(relay, '/flux/events', numberedEvent(run, 0))).status, 202);

      // Fill the filesystem to the last byte.
      const filler = path.join(mountPoint, 'filler');
      const fd = fs.openSync(filler, 'w');
      const block = Buffer.alloc(64 * 1024, 1);
      try {
        for (;;) fs.writeSync(fd, block);
      } catch (error) {
        assert.equal(error.code, 'ENOSPC');
      }
      fs.closeSync(fd);

      // SQLite may still have room in pages it already owns: keep posting until it has none.
      const acked = [0];
      let refused = null;
      for (let seq = 1; seq <= 3000 && !refused; seq += 1) {
        const response = await postEvent(relay, '/flux/events', numberedEvent(run, seq));
        if (response.status === 202) acked.push(seq);
        else refused = response;
      }
      assert.ok(refused, 'a full disk must eventually refuse events');
      assert.equal(refused.status, 503, refused.text);
      assert.ok(refused.json && refused.json.error, 'a 503 names the problem');
      assert.equal((await fetch(`${relay.adminUrl}/readyz`)).status, 503);

      fs.unlinkSync(filler);
      await waitFor(async () => (await fetch(`${relay.adminUrl}/readyz`)).status === 200, { what: '/readyz recovers' });
      const late = acked.length + 10_000;
      assert.equal((await postEvent(relay, '/flux/events', numberedEvent(run, late))).status, 202);
      acked.push(late);

      await waitFor(
        async () => {
          const delivered = await deliveredSeqs(am, run);
          return acked.every((seq) => delivered.has(seq));
        },
        { timeoutMs: DELIVERY_TIMEOUT_MS, what: `all ${acked.length} acknowledged events delivered` },
      );
      await relay.stop();
      await am.stop();
    } finally {
      execFileSync('umount', ['-l', mountPoint]);
    }
  });
});
