// The container image that `make image` builds (deploy/Dockerfile), run as it is: its own
// entrypoint, command, user and working folder, by `buildah run --isolation chroot` (no container
// runtime needed; the chroot shares this machine's network, so 127.0.0.1 is the host's), with a
// config folder mounted read-only at /etc/fluxrelay as Kubernetes mounts it. A signed Flux event
// posted to it must reach a real Alertmanager, its spool must go where the image lets UID 65532
// write, and SIGTERM must stop it cleanly. Also reports the image's size.
//
// Skipped while fluxrelay:VERSION is not built (`make image`, as root), so `make test` does not
// need the image; FLUXRELAY_IMAGE_REQUIRED=1 (CI's image stage) fails instead of skipping.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';

import {
  baseConfig, cleanup, DEFAULT_HMAC_KEY, DEFAULT_TIMEOUT_MS, expectedFluxLabels, fluxEvent, freePort,
  makeTempDir, postEvent, repoRoot, request, spawnLogged, startAlertmanager, stopChild, toYaml, uniqueSuffix, waitFor,
} from './harness.mjs';

const version = /project\(fluxrelay VERSION (\S+)/.exec(fs.readFileSync(path.join(repoRoot, 'CMakeLists.txt'), 'utf8'))[1];
const image = `fluxrelay:${version}`;
const configFolder = '/etc/fluxrelay';
// The goal for the image pushed to a registry (its layers gzip-compressed).
const MAX_COMPRESSED_BYTES = 40e6;

function buildah(args, { allowFailure = false } = {}) {
  const result = spawnSync('buildah', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (!allowFailure) {
    assert.ok(!result.error, `buildah: ${result.error?.message}`);
    assert.equal(result.status, 0, `buildah ${args.join(' ')} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}

// The image's OCI config ({User, Entrypoint, Cmd, WorkingDir, Labels, ...}), or why there is none.
function inspectImage() {
  const result = buildah(['inspect', '--type', 'image', image], { allowFailure: true });
  if (result.error) return { reason: `buildah is not installed (scripts/install-deps.sh --image), so ${image} cannot be run` };
  if (result.status !== 0) return { reason: `${image} is not built; \`make image\` (as root) builds it` };
  return { config: JSON.parse(result.stdout).OCIv1.config };
}

const inspected = inspectImage();
if (inspected.reason && process.env.FLUXRELAY_IMAGE_REQUIRED === '1') {
  throw new Error(`FLUXRELAY_IMAGE_REQUIRED=1 but ${inspected.reason}`);
}

// The processes below `pid`: under `buildah run` a root helper, then buildah-chroot-exec (already
// chrooted, as the image's user) and the command as its child.
function descendants(pid) {
  const parentOf = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const below = (candidate) => {
    for (let parent = parentOf.get(candidate); parent; parent = parentOf.get(parent)) {
      if (parent === pid) return true;
    }
    return false;
  };
  return [...parentOf.keys()].filter(below);
}

function commandName(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

// Bytes gzip (default level, as `gzip -c | wc -c`) makes of a file.
async function gzippedSize(file) {
  let bytes = 0;
  await pipeline(fs.createReadStream(file), zlib.createGzip(), new Writable({
    write(chunk, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  }));
  return bytes;
}

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

describe(`container image ${image}`, { skip: inspected.reason || false }, () => {
  const config = inspected.config;
  let alertmanager;
  let container;
  let mountPoint;
  let relay;
  let run; // {child, log, exited} of `buildah run`
  const relayPid = () => descendants(run.child.pid).find((pid) => commandName(pid) === 'fluxrelay');

  before(async () => {
    alertmanager = await startAlertmanager();
    // The config folder as a pod gets it: config and secret readable by all (Kubernetes' 0644),
    // mounted read-only, so the relay can read them as UID 65532 and does not warn about the mode.
    const dir = await makeTempDir('fluxrelay-it-image-');
    await fsp.chmod(dir, 0o755);
    const ingestPort = await freePort();
    const adminPort = await freePort();
    const object = baseConfig({ alertmanagerUrl: alertmanager.url });
    object.server.listen = `127.0.0.1:${ingestPort}`;
    object.admin.listen = `127.0.0.1:${adminPort}`;
    object.storage = { path: '/var/lib/fluxrelay' };
    await fsp.writeFile(path.join(dir, 'config.yaml'), `${toYaml(object)}\n`, { mode: 0o644 });
    await fsp.writeFile(path.join(dir, 'flux-hmac'), DEFAULT_HMAC_KEY, { mode: 0o644 });

    container = buildah(['from', '--quiet', '--pull=never', image]).stdout.trim();
    mountPoint = buildah(['mount', container]).stdout.trim();
    relay = { url: `http://127.0.0.1:${ingestPort}`, adminUrl: `http://127.0.0.1:${adminPort}`, hmacKey: DEFAULT_HMAC_KEY };

    // What `docker run IMAGE` runs: ENTRYPOINT + CMD, as USER, in WORKDIR.
    run = spawnLogged('buildah run (fluxrelay image)', 'buildah', [
      'run', '--isolation', 'chroot',
      '--user', config.User,
      '--workingdir', config.WorkingDir,
      '--volume', `${dir}:${configFolder}:ro`,
      container, '--', ...config.Entrypoint, ...(config.Cmd || []),
    ]);
    let exitedEarly = null;
    run.exited.then((result) => {
      exitedEarly = result;
    });
    await waitFor(async () => exitedEarly || (await request(`${relay.adminUrl}/readyz`)).status === 200, {
      timeoutMs: DEFAULT_TIMEOUT_MS,
      what: `the image's fluxrelay ready on ${relay.adminUrl}/readyz`,
    }).catch((error) => {
      error.message += `\n${run.log.tail(60)}`;
      throw error;
    });
    assert.equal(exitedEarly, null, `fluxrelay in the image exited during start-up:\n${run.log.tail(60)}`);
  });

  after(async () => {
    if (run) {
      // What runs in the container first: killing buildah alone could leave it behind.
      for (const pid of descendants(run.child.pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await stopChild(run.child, 'SIGKILL', 10_000);
    }
    if (container) buildah(['rm', container], { allowFailure: true });
    await cleanup();
  });

  it('runs its entrypoint and command as UID 65532, reading the mounted config', () => {
    assert.match(config.User, /^65532(?::65532)?$/, 'the image runs as UID 65532');
    assert.deepEqual(config.Entrypoint, ['/usr/local/bin/fluxrelay']);
    assert.deepEqual(config.Cmd, ['serve', '--config', `${configFolder}/config.yaml`]);
    assert.equal(config.WorkingDir, '/var/lib/fluxrelay');
    const pid = relayPid();
    assert.ok(pid, `fluxrelay runs below buildah run (pid ${run.child.pid})`);
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    assert.match(status, /^Uid:\s+65532\s+65532\s+65532\s+65532$/m, 'as UID 65532');
    assert.match(status, /^Gid:\s+65532\s+65532\s+65532\s+65532$/m, 'in group 65532');
    assert.notEqual(fs.readlinkSync(`/proc/${pid}/root`), '/', 'chrooted into the container');
    assert.doesNotMatch(run.log.text(), /readable by every user|writable by every user/, 'no mode warning for a read-only mount');
  });

  it('delivers a signed Flux event to Alertmanager', async () => {
    const event = fluxEvent({ involvedObject: { name: `image-${uniqueSuffix()}` } });
    const response = await postEvent(relay, '/flux/events', event);
    assert.equal(response.status, 202, response.text);
    const [alert] = await waitFor(async () => {
      const alerts = await alertmanager.alerts({ name: event.involvedObject.name });
      return alerts.length > 0 && alerts;
    }, { what: 'the alert in Alertmanager' });
    for (const [label, value] of Object.entries(expectedFluxLabels(event))) {
      assert.equal(alert.labels[label], value, `label ${label}`);
    }
    assert.equal(alert.annotations.message, event.message);

    const unsigned = await postEvent(relay, '/flux/events', event, { key: null });
    assert.equal(unsigned.status, 401);
  });

  it('keeps its spool in /var/lib/fluxrelay, owned by 65532', () => {
    const data = path.join(mountPoint, 'var/lib/fluxrelay');
    const files = fs.readdirSync(data);
    assert.ok(files.length > 0, 'the spool is written there');
    for (const file of files) {
      const { uid, gid } = fs.statSync(path.join(data, file));
      assert.deepEqual([file, uid, gid], [file, 65532, 65532]);
    }
  });

  // As `docker stop` does, to the container's process: buildah run itself turns a SIGTERM into a
  // SIGKILL of what it runs. buildah run then exits with the relay's status.
  it('stops on SIGTERM with exit status 0', async () => {
    const pid = relayPid();
    assert.ok(pid, 'fluxrelay still runs');
    process.kill(pid, 'SIGTERM');
    let timer;
    const result = await Promise.race([
      run.exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve({ timedOut: true }), DEFAULT_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    assert.ok(!result.timedOut, `no exit within ${DEFAULT_TIMEOUT_MS} ms of SIGTERM:\n${run.log.tail(40)}`);
    assert.equal(result.code, 0, `exit ${JSON.stringify(result)}:\n${run.log.tail(40)}`);
    assert.match(run.log.text(), /signal 15 received, shutting down/, 'a graceful stop');
  });

  it(`is at most ${megabytes(MAX_COMPRESSED_BYTES)} compressed`, async (t) => {
    const archive = path.join(await makeTempDir('fluxrelay-it-image-size-'), 'image.tar');
    buildah(['push', '--quiet', image, `docker-archive:${archive}:${image}`]);
    const uncompressed = fs.statSync(archive).size;
    const compressed = await gzippedSize(archive);
    const revision = config.Labels?.['org.opencontainers.image.revision'] || 'unknown';
    const head = spawnSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).stdout?.trim();
    t.diagnostic(`${image}: ${megabytes(compressed)} compressed (gzip of its docker-archive), ${megabytes(uncompressed)} uncompressed`);
    t.diagnostic(`built from revision ${revision}${head && head !== revision ? `; this tree is at ${head}` : ''}`);
    assert.ok(compressed <= MAX_COMPRESSED_BYTES, `${megabytes(compressed)} compressed is over ${megabytes(MAX_COMPRESSED_BYTES)}`);
  });
});
