// deploy/: every Kustomize folder renders and lints; the rendered objects carry what the relay
// needs (probes, non-root, limits, ports and files matching its config); the configs they ship
// pass check-config; the TLS variant is the base plus HTTPS and serves it when run; the dashboard
// and the alerts name only metrics a live relay exports; and the image's build script gives a
// binary whose libraries the runtime stage installs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';

import { cleanup, fluxEvent, freePort, makeTempDir, postEvent, relayBinary, repoRoot, request, runRelayCommand, signFlux, startRelay, waitFor } from './harness.mjs';

const deployDir = path.join(repoRoot, 'deploy');
const kubernetesDir = path.join(deployDir, 'kubernetes');
const overlays = ['base', 'flux', 'examples/home-ops/app', 'tls'];
// Where the image's CMD and the Deployment expect the config folder.
const configFolder = '/etc/fluxrelay';

after(cleanup);

// ---------------------------------------------------------------------------------------------
// Helpers.

// Runs a command to completion; fails the test with its output unless it exits 0.
function run(command, args, { input } = {}) {
  const result = spawnSync(command, args, { cwd: repoRoot, input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) {
    throw new Error(`${command}: ${result.error.message} (run scripts/install-deps.sh)`);
  }
  assert.equal(result.status, 0, `${command} ${args.join(' ')} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

// YAML → JSON by PyYAML, which yamllint (a test dependency) brings along: no npm package needed.
function parseYamlDocuments(text) {
  const script = 'import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)';
  return JSON.parse(run('python3', ['-c', script], { input: text }));
}

function render(overlay) {
  return run('kubectl', ['kustomize', path.join(kubernetesDir, overlay)]);
}

function find(objects, kind, name) {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.ok(found, `${kind}${name ? `/${name}` : ''} is rendered`);
  return found;
}

// "0.0.0.0:8080" → {host, port}.
function endpoint(text) {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) };
}

// The relay as the overlay deploys it: its config (parsed and as text), the Deployment, its
// container and the files the projected config volume provides, relative to the config's folder.
function relayOf(objects) {
  const deployment = find(objects, 'Deployment', 'fluxrelay');
  const pod = deployment.spec.template.spec;
  const [container] = pod.containers;
  const configArg = container.args[container.args.indexOf('--config') + 1];
  const mount = container.volumeMounts.find((m) => configArg.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `a volume is mounted where --config ${configArg} points`);
  const volume = pod.volumes.find((v) => v.name === mount.name);
  assert.ok(volume.projected, 'the config volume is projected: config and secrets as one folder');
  const files = new Map(); // path in the folder → {configMap|secret: name, key}
  for (const source of volume.projected.sources) {
    const [type, ref] = Object.entries(source)[0];
    for (const item of ref.items) files.set(item.path, { [type]: ref.name, key: item.key });
  }
  const configFile = configArg.slice(mount.mountPath.length + 1);
  const configMapName = files.get(configFile)?.configMap;
  assert.ok(configMapName, `${configFile} comes from a ConfigMap`);
  const configText = find(objects, 'ConfigMap', configMapName).data[files.get(configFile).key];
  const [config] = parseYamlDocuments(configText);
  return { deployment, pod, container, mount, files, configFile, configText, config };
}

// Every file the config names (secrets, certificates), relative to the config's folder.
function referencedFiles(config) {
  const keys = new Set(['hmacKeyFile', 'secretFile', 'tokenFile', 'passwordFile', 'privateKeyFile', 'caFile', 'certFile', 'keyFile', 'clientCAFile']);
  const out = [];
  const walk = (value) => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        if (keys.has(key) && typeof inner === 'string') out.push(inner);
        else walk(inner);
      }
    }
  };
  walk(config);
  return out;
}

// The content of each projected Secret file, in a folder laid out as in the pod: `tls.crt`,
// `tls.key` and `ca.crt` keys get `pki`'s (see issueCertificate), the HMAC key Secret `hmacKey`,
// every other key a dummy.
function secretFiles(relay, { pki = {}, hmacKey } = {}) {
  const files = {};
  for (const [file, source] of relay.files) {
    if (!source.secret) continue;
    if (source.key in pki) files[file] = pki[source.key];
    else if (hmacKey && source.secret === 'fluxrelay-hmac') files[file] = hmacKey;
    else files[file] = `dummy-${source.secret}-${source.key}\n`;
  }
  return files;
}

// The config's folder as the pod sees it: the config and every projected secret (secretFiles).
async function layOutConfigFolder(relay, options) {
  const dir = await makeTempDir('fluxrelay-it-deploy-');
  const files = { [relay.configFile]: relay.configText, ...secretFiles(relay, options) };
  for (const [file, content] of Object.entries(files)) {
    const target = path.join(dir, file);
    await fsp.mkdir(path.dirname(target), { recursive: true });
    await fsp.writeFile(target, content, { mode: 0o600 });
  }
  return { dir, configFile: path.join(dir, relay.configFile) };
}

// The overlay's config, runnable here: loopback listeners, a temp storage folder, its Alertmanager
// on a free (unreachable) loopback port, and an API server address for `kubernetes` targets (outside
// a pod there is none to default to). Only those lines change.
async function localConfigText(relay) {
  let text = relay.configText;
  for (const [from, to] of [
    [relay.config.server.listen, `127.0.0.1:${await freePort()}`],
    [relay.config.admin.listen, `127.0.0.1:${await freePort()}`],
    [`path: ${relay.config.storage.path}`, 'path: ./data'],
    ['alertmanager-operated.monitoring.svc.cluster.local:9093', `127.0.0.1:${await freePort()}`],
  ]) {
    assert.ok(text.includes(from), `the config contains ${from}`);
    text = text.replace(from, to);
  }
  const kubernetesTarget = /^( +)type: kubernetes\b.*$/m;
  assert.match(text, kubernetesTarget);
  return text.replace(kubernetesTarget, `$1type: kubernetes\n$1address: http://127.0.0.1:${await freePort()}`);
}

// A CA and a server certificate it signed, as cert-manager's CA issuer fills a Certificate's
// Secret: {'tls.crt', 'tls.key', 'ca.crt'} (PEM), for `dnsNames` plus localhost and 127.0.0.1.
// Made with the openssl CLI, as in tls.test.mjs.
async function issueCertificate(dnsNames) {
  const dir = await makeTempDir('fluxrelay-it-deploy-pki-');
  const openssl = (...args) => promisify(execFile)('openssl', args, { cwd: dir });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const names = [...dnsNames, 'localhost'].map((name) => `DNS:${name}`).join(', ');
  await fsp.writeFile(
    path.join(dir, 'openssl.cnf'),
    '[req]\ndistinguished_name = dn\n[dn]\n[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign\n' +
      `[server]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectAltName = ${names}, IP:127.0.0.1\n`,
  );
  await openssl('req', '-x509', ...key, '-config', 'openssl.cnf', '-extensions', 'ca', '-subj', '/CN=deploy test CA', '-days', '2', '-keyout', 'ca.key', '-out', 'ca.crt');
  await openssl('req', '-new', ...key, '-config', 'openssl.cnf', '-subj', `/CN=${dnsNames[0]}`, '-keyout', 'tls.key', '-out', 'tls.csr');
  await openssl('x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '4243', '-days', '2', '-extfile', 'openssl.cnf', '-extensions', 'server', '-out', 'tls.crt');
  const pki = {};
  for (const file of ['tls.crt', 'tls.key', 'ca.crt']) pki[file] = await fsp.readFile(path.join(dir, file), 'utf8');
  return pki;
}

// An HTTPS request that verifies the server as Flux's Provider does: against `ca` only, for the
// host name `servername` (whatever address it connects to). Returns {status, text}.
function httpsRequest(url, { ca, servername, method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca, servername, agent: false, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

// Metric names a PromQL expression reads: identifiers that are not functions, keywords, labels
// (inside {}, by/without/on/ignoring/group_* lists), strings, durations or Grafana variables.
function promqlMetricNames(expr) {
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set();
  for (const match of text.matchAll(/\$\{?\w+\}?|[0-9][\w.]*|[A-Za-z_:][\w:]*/g)) {
    const word = match[0];
    if (word.startsWith('$') || /^[0-9]/.test(word) || keywords.has(word.toLowerCase())) continue;
    if (/^\s*\(/.test(text.slice(match.index + word.length))) continue; // a function call
    names.add(word);
  }
  return names;
}

// Metric families of a scrape, from its `# TYPE` lines: present whether or not a series is.
function metricFamilies(scrape) {
  const families = new Map();
  for (const [, name, type] of scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(name, type);
  return families;
}

function isExported(name, families) {
  if (families.has(name)) return true;
  const suffix = /_(bucket|sum|count)$/.exec(name);
  return Boolean(suffix) && ['histogram', 'summary'].includes(families.get(name.slice(0, suffix.index)));
}

// ---------------------------------------------------------------------------------------------

describe('deploy/kubernetes', () => {
  const rendered = new Map();

  before(() => {
    for (const overlay of overlays) rendered.set(overlay, parseYamlDocuments(render(overlay)));
  });

  it('passes yamllint', () => {
    run('yamllint', ['--strict', '-c', path.join(deployDir, '.yamllint.yaml'), deployDir]);
  });

  it('renders every folder with a kustomization, and only those', () => {
    const found = [];
    const walk = (dir) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(path.join(dir, entry.name));
        else if (entry.name === 'kustomization.yaml') found.push(path.relative(kubernetesDir, dir));
      }
    };
    walk(kubernetesDir);
    assert.deepEqual(found.sort(), [...overlays].sort());
    for (const overlay of overlays) assert.ok(rendered.get(overlay).length > 0, `${overlay} renders objects`);
  });

  it('references Secrets and never carries one', () => {
    for (const [overlay, objects] of rendered) {
      assert.deepEqual(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name), [], `${overlay} renders no Secret`);
    }
  });

  it('leaves nothing for Flux post-build substitution to eat, except on purpose', () => {
    // A Flux Kustomization with postBuild replaces every ${VAR}, also inside the ConfigMaps.
    for (const overlay of ['base', 'flux', 'tls']) {
      assert.doesNotMatch(JSON.stringify(rendered.get(overlay)), /\$\{/, `${overlay} has no \${...}`);
    }
    const homeOps = JSON.stringify(rendered.get('examples/home-ops/app'));
    assert.deepEqual([...new Set(homeOps.match(/\$\{\w+\}/g))], ['${SECRET_DOMAIN}']);
  });

  for (const overlay of ['base', 'examples/home-ops/app', 'tls']) {
    describe(overlay, () => {
      let objects;
      let relay;
      before(() => {
        objects = rendered.get(overlay);
        relay = relayOf(objects);
      });

      it('runs the relay non-root on a read-only root filesystem, with resources', () => {
        const { pod, container } = relay;
        assert.equal(pod.securityContext.runAsNonRoot, true);
        assert.equal(pod.automountServiceAccountToken, true, 'kubernetes targets read the token and CA mounted');
        assert.ok(pod.securityContext.runAsUser > 0, 'a non-zero UID');
        assert.equal(container.securityContext.readOnlyRootFilesystem, true);
        assert.equal(container.securityContext.allowPrivilegeEscalation, false);
        assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
        assert.ok(container.resources.requests.cpu && container.resources.requests.memory, 'CPU and memory requests');
        assert.ok(container.resources.limits.memory, 'a memory limit');
        const version = /project\(fluxrelay VERSION (\S+)/.exec(fs.readFileSync(path.join(repoRoot, 'CMakeLists.txt'), 'utf8'))[1];
        assert.equal(container.image, `fluxrelay:${version}`, 'the image tag is the project version');
      });

      it('gives every path the relay writes a volume', () => {
        const { container, pod, config } = relay;
        const writable = container.volumeMounts.filter((m) => !m.readOnly).map((m) => m.mountPath);
        assert.ok(writable.includes(config.storage.path), `storage.path ${config.storage.path} is a mounted volume`);
        assert.ok(writable.includes('/tmp'), '/tmp is a volume (SQLite temporary files)');
        const data = pod.volumes.find((v) => v.name === container.volumeMounts.find((m) => m.mountPath === config.storage.path).name);
        assert.ok(data.persistentVolumeClaim, 'the spool is on a PersistentVolumeClaim by default');
        find(objects, 'PersistentVolumeClaim', data.persistentVolumeClaim.claimName);
        assert.equal(relay.deployment.spec.strategy.type, 'Recreate', 'one writer on the spool at a time');
      });

      it('listens, probes and serves on the ports of its config', () => {
        const { container, config } = relay;
        const ingest = endpoint(config.server.listen);
        const admin = endpoint(config.admin.listen);
        assert.equal(ingest.host, '0.0.0.0');
        assert.equal(admin.host, '0.0.0.0', 'admin reachable for Prometheus');
        const ports = Object.fromEntries(container.ports.map((p) => [p.name, p.containerPort]));
        assert.deepEqual(ports, { ingest: ingest.port, admin: admin.port });
        const portOf = (probe) => (typeof probe.httpGet.port === 'string' ? ports[probe.httpGet.port] : probe.httpGet.port);
        assert.equal(container.livenessProbe.httpGet.path, '/healthz');
        assert.equal(container.readinessProbe.httpGet.path, '/readyz');
        assert.equal(container.startupProbe.httpGet.path, '/healthz');
        for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
          assert.equal(portOf(probe), ingest.port, 'probes go to the ingest listener');
          assert.equal(probe.httpGet.scheme ?? 'HTTP', config.server.tls ? 'HTTPS' : 'HTTP', 'probes speak what the ingest listener speaks');
        }
        const service = find(objects, 'Service', 'fluxrelay');
        assert.deepEqual(
          service.spec.ports.map((p) => [p.name, p.port, ports[p.targetPort]]),
          [['ingest', ingest.port, ingest.port], ['admin', admin.port, admin.port]],
        );
        const podLabels = relay.deployment.spec.template.metadata.labels;
        for (const [key, value] of Object.entries(service.spec.selector)) assert.equal(podLabels[key], value);
      });

      it('mounts every file its config reads', () => {
        assert.equal(relay.mount.mountPath, configFolder);
        assert.equal(relay.mount.readOnly, true);
        for (const file of referencedFiles(relay.config)) {
          assert.ok(!path.isAbsolute(file), `${file} is relative to the config, as mounted`);
          const inFolder = path.posix.normalize(file);
          assert.ok(relay.files.get(inFolder)?.secret, `${file} is a projected Secret key`);
        }
      });

      it('passes check-config with the files laid out as in the pod', async () => {
        // TLS files are read for real: a certificate for the Service's names stands in for cert-manager's.
        const pki = relay.config.server.tls ? await issueCertificate(['fluxrelay.flux-system.svc']) : {};
        const { configFile } = await layOutConfigFolder(relay, { pki });
        const result = await runRelayCommand(['check-config', configFile]);
        assert.equal(result.code, 0, `check-config:\n${result.stdout}${result.stderr}`);
      });

      it('lets the service account patch what kubernetes targets reconcile', () => {
        const account = relay.pod.serviceAccountName;
        find(objects, 'ServiceAccount', account);
        const kubernetesTargets = relay.config.targets.filter((t) => t.type === 'kubernetes');
        for (const target of kubernetesTargets) {
          for (const resource of target.resources) {
            const group = resource.apiVersion.split('/')[0];
            const plural = resource.kind.toLowerCase().replace(/y$/, 'ie') + 's'; // as Flux's CRDs name them
            const binding = objects.find(
              (o) => o.kind === 'RoleBinding' && o.metadata.namespace === resource.namespace &&
                o.subjects.some((s) => s.kind === 'ServiceAccount' && s.name === account && s.namespace === relay.deployment.metadata.namespace),
            );
            assert.ok(binding, `a RoleBinding in ${resource.namespace} for ${account}`);
            const role = find(objects, 'Role', binding.roleRef.name);
            assert.ok(
              role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(plural) && r.verbs.includes('patch')),
              `Role ${role.metadata.name} may patch ${plural}.${group}`,
            );
          }
        }
      });

      it('admits the ports it serves and is scraped on the admin port', () => {
        const podLabels = relay.deployment.spec.template.metadata.labels;
        const selects = (selector) => Object.entries(selector.matchLabels).every(([k, v]) => podLabels[k] === v);
        const policy = find(objects, 'NetworkPolicy');
        assert.ok(selects(policy.spec.podSelector));
        const admitted = policy.spec.ingress.flatMap((rule) => rule.ports.map((p) => p.port));
        assert.deepEqual(admitted.sort(), ['admin', 'ingest']);
        const monitor = find(objects, 'PodMonitor');
        assert.ok(selects(monitor.spec.selector));
        assert.deepEqual(monitor.spec.podMetricsEndpoints.map((e) => [e.port, e.path]), [['admin', '/metrics']]);
        const dashboard = find(objects, 'ConfigMap', 'fluxrelay-dashboard');
        assert.equal(dashboard.metadata.labels.grafana_dashboard, '1');
        assert.notEqual(find(objects, 'ConfigMap', 'fluxrelay-config').metadata.labels?.grafana_dashboard, '1');
      });
    });
  }

  it('points Flux at the relay: a generic-hmac Provider and an Alert on every kind', () => {
    const base = relayOf(rendered.get('base'));
    const objects = rendered.get('flux');
    const provider = find(objects, 'Provider', 'fluxrelay');
    assert.equal(provider.spec.type, 'generic-hmac');
    const fluxSource = base.config.sources.find((s) => s.type === 'flux');
    assert.equal(base.files.get(path.posix.normalize(fluxSource.hmacKeyFile)).secret, provider.spec.secretRef.name, "the relay's HMAC key is the Provider's Secret");
    const service = find(rendered.get('base'), 'Service', 'fluxrelay');
    const ingestPort = service.spec.ports.find((p) => p.name === 'ingest').port;
    assert.equal(provider.spec.address, `http://fluxrelay.${service.metadata.namespace}.svc.cluster.local:${ingestPort}${fluxSource.path}`);
    const alert = find(objects, 'Alert', 'fluxrelay');
    assert.equal(alert.spec.providerRef.name, provider.metadata.name);
    assert.equal(alert.spec.eventSeverity, 'info', 'info events too: they resolve alerts');
    const kinds = alert.spec.eventSources.map((s) => s.kind);
    for (const kind of ['GitRepository', 'OCIRepository', 'HelmRepository', 'HelmChart', 'Bucket', 'Kustomization', 'HelmRelease', 'ImageRepository', 'ImagePolicy', 'ImageUpdateAutomation']) {
      assert.ok(kinds.includes(kind), `the Alert forwards ${kind} events`);
    }
    assert.ok(alert.spec.eventSources.every((s) => s.name === '*'));
  });

  it('routes only the GitHub webhook path to the relay from outside', () => {
    const base = relayOf(rendered.get('base'));
    const githubPath = base.config.sources.find((s) => s.type === 'github').path;
    const ingestPort = endpoint(base.config.server.listen).port;
    const routes = [
      ...parseYamlDocuments(fs.readFileSync(path.join(kubernetesDir, 'flux', 'webhook-httproute.yaml'), 'utf8')),
      find(rendered.get('examples/home-ops/app'), 'HTTPRoute'),
    ];
    for (const route of routes) {
      assert.deepEqual(route.spec.rules.map((r) => [r.matches.map((m) => [m.path.type, m.path.value]), r.backendRefs.map((b) => [b.name, b.port])]), [
        [[['Exact', githubPath]], [['fluxrelay', ingestPort]]],
      ]);
    }
    const [ingress] = parseYamlDocuments(fs.readFileSync(path.join(kubernetesDir, 'flux', 'webhook-ingress.yaml'), 'utf8'));
    const paths = ingress.spec.rules.flatMap((r) => r.http.paths);
    assert.deepEqual(paths.map((p) => [p.path, p.pathType, p.backend.service.name, p.backend.service.port.name]), [[githubPath, 'Exact', 'fluxrelay', 'ingest']]);
  });

  it("routes as home-ops: config/example.yaml's route, commit statuses and push → Receiver", () => {
    const { config } = relayOf(rendered.get('examples/home-ops/app'));
    const [reference] = parseYamlDocuments(fs.readFileSync(path.join(repoRoot, 'config', 'example.yaml'), 'utf8'));
    const referenceRoute = reference.routes.find((r) => r.name === 'home-ops');
    const alertmanager = config.routes.find((r) => r.targets.includes('alertmanager'));
    assert.deepEqual(alertmanager.eventSources, referenceRoute.eventSources);
    assert.deepEqual(alertmanager.exclusionList, referenceRoute.exclusionList);
    assert.equal(alertmanager.eventSeverity, 'error');
    const byName = Object.fromEntries(config.targets.map((t) => [t.name, t]));
    assert.equal(byName.alertmanager.resolve, true);
    const statusRoute = config.routes.find((r) => r.targets.some((t) => byName[t].type === 'github'));
    assert.deepEqual(statusRoute.eventSources, [{ kind: 'Kustomization', name: '*' }]);
    const pushRoute = config.routes.find((r) => r.source === 'github');
    assert.deepEqual(pushRoute.events, ['push']);
    assert.deepEqual(pushRoute.targets.map((t) => byName[t].type), ['flux-receiver']);
    assert.deepEqual(byName[pushRoute.targets[0]].receiver, { name: 'github-webhook', namespace: 'flux-system' });
    // Flux must forward the kinds the routes listen to.
    const alert = find(rendered.get('examples/home-ops/app'), 'Alert', 'fluxrelay');
    const forwarded = new Set(alert.spec.eventSources.map((s) => s.kind));
    for (const route of config.routes.filter((r) => r.source === 'flux')) {
      for (const { kind } of route.eventSources) assert.ok(forwarded.has(kind), `the Alert forwards ${kind} for route ${route.name}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('deploy/kubernetes/tls: the base and flux folders, with HTTPS on the ingest listener', () => {
  let objects;
  let relay;
  let base;
  let certificate;
  let provider;
  const keyOf = (o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

  before(() => {
    objects = parseYamlDocuments(render('tls'));
    relay = relayOf(objects);
    base = relayOf(parseYamlDocuments(render('base')));
    certificate = find(objects, 'Certificate');
    provider = find(objects, 'Provider', 'fluxrelay');
  });

  it("runs the base's config with server.tls added, and nothing else changed", () => {
    assert.equal(base.config.server.tls, undefined, 'the base serves plain HTTP');
    assert.ok(relay.config.server.tls, 'the TLS config sets server.tls');
    const { tls, ...server } = relay.config.server;
    assert.deepEqual({ ...relay.config, server }, base.config, 'config.yaml is the base one plus server.tls');
    assert.deepEqual(Object.keys(tls).sort(), ['certFile', 'keyFile'], 'no clientCAFile: Flux presents no client certificate');
    assert.equal(relay.config.admin.tls, undefined, 'admin stays HTTP, for the PodMonitor');
    assert.deepEqual(find(objects, 'PodMonitor').spec.podMetricsEndpoints.map((e) => e.scheme ?? 'http'), ['http']);
  });

  it('renders the base and flux objects, changing only the Deployment, the config and the Provider', () => {
    const expected = new Map([...parseYamlDocuments(render('base')), ...parseYamlDocuments(render('flux'))].map((o) => [keyOf(o), o]));
    const changed = new Set(['Deployment/flux-system/fluxrelay', 'ConfigMap/flux-system/fluxrelay-config', 'Provider/flux-system/fluxrelay']);
    const actual = new Map(objects.map((o) => [keyOf(o), o]));
    assert.deepEqual([...actual.keys()].filter((key) => !expected.has(key)), [keyOf(certificate)], 'one object more: the Certificate');
    assert.deepEqual([...expected.keys()].filter((key) => !actual.has(key)), [], 'nothing of base and flux is left out');
    for (const [key, object] of expected) {
      if (!changed.has(key)) assert.deepEqual(actual.get(key), object, `${key} is the same`);
    }
    // The Deployment: the base one, plus the TLS Secret in the config folder and HTTPS probes.
    const deployment = structuredClone(relay.deployment);
    const [container] = deployment.spec.template.spec.containers;
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) delete container[probe].httpGet.scheme;
    const volume = deployment.spec.template.spec.volumes.find((v) => v.name === relay.mount.name);
    const added = volume.projected.sources.filter((source) => source.secret?.name === certificate.spec.secretName);
    assert.equal(added.length, 1);
    volume.projected.sources = volume.projected.sources.filter((source) => !added.includes(source));
    assert.deepEqual(deployment, base.deployment, 'the Deployment is the base one but for TLS');
    // The Provider: the flux folder's, on https and with certSecretRef.
    const { certSecretRef, ...spec } = provider.spec;
    assert.ok(certSecretRef);
    assert.deepEqual({ ...provider, spec: { ...spec, address: spec.address.replace(/^https:/, 'http:') } }, expected.get(keyOf(provider)));
  });

  it("mounts the Certificate's Secret where server.tls points", () => {
    const { certFile, keyFile } = relay.config.server.tls;
    for (const [file, key] of [[certFile, 'tls.crt'], [keyFile, 'tls.key']]) {
      assert.ok(!path.isAbsolute(file), `${file} is relative to the config, as mounted`);
      assert.deepEqual(relay.files.get(path.posix.normalize(file)), { secret: certificate.spec.secretName, key }, `${file} is ${key} of the Certificate's Secret`);
    }
    assert.equal(certificate.apiVersion, 'cert-manager.io/v1');
    assert.equal(certificate.metadata.namespace, relay.deployment.metadata.namespace);
  });

  it("issues the certificate for the Service's names, from an issuer the user names", () => {
    const service = find(objects, 'Service', 'fluxrelay');
    const { name, namespace } = service.metadata;
    assert.deepEqual(certificate.spec.dnsNames, [`${name}.${namespace}.svc`, `${name}.${namespace}.svc.cluster.local`]);
    assert.ok(certificate.spec.usages.includes('server auth'));
    const { kind, name: issuer } = certificate.spec.issuerRef;
    assert.ok(['Issuer', 'ClusterIssuer'].includes(kind) && issuer, 'an issuerRef with kind and name');
    // ca-issuer.yaml (applied separately) makes that issuer: a CA one, so the Secret gets ca.crt.
    const issuers = parseYamlDocuments(fs.readFileSync(path.join(kubernetesDir, 'tls', 'ca-issuer.yaml'), 'utf8'));
    const made = issuers.find((o) => o.kind === kind && o.metadata.name === issuer);
    assert.ok(made?.spec.ca, `ca-issuer.yaml makes ${kind} ${issuer}, a CA issuer`);
    const caCertificate = issuers.find((o) => o.kind === 'Certificate' && o.spec.secretName === made.spec.ca.secretName);
    assert.equal(caCertificate?.spec.isCA, true, "the CA issuer's Secret is a CA Certificate's");
    assert.ok(issuers.some((o) => o.kind === 'ClusterIssuer' && o.metadata.name === caCertificate.spec.issuerRef.name), 'which ca-issuer.yaml issues too');
  });

  it('points Flux at https:// on a name of the certificate, trusting the Secret through certSecretRef', () => {
    const fluxSource = relay.config.sources.find((s) => s.type === 'flux');
    const service = find(objects, 'Service', 'fluxrelay');
    const ingestPort = service.spec.ports.find((p) => p.name === 'ingest').port;
    const address = new URL(provider.spec.address);
    assert.equal(address.protocol, 'https:');
    assert.ok(certificate.spec.dnsNames.includes(address.hostname), `${address.hostname} is one of the certificate's names`);
    assert.equal(Number(address.port), ingestPort);
    assert.equal(address.pathname, fluxSource.path);
    assert.equal(provider.spec.certSecretRef.name, certificate.spec.secretName, "Flux reads ca.crt from the Certificate's Secret");
    assert.equal(relay.files.get(path.posix.normalize(fluxSource.hmacKeyFile)).secret, provider.spec.secretRef.name);
    assert.equal(find(objects, 'Alert', 'fluxrelay').spec.providerRef.name, provider.metadata.name);
  });

  it("serves HTTPS /readyz and Flux's events with the rendered config, verified as Flux verifies it", async () => {
    // The Secret as cert-manager's CA issuer would fill it, for the Certificate's names.
    const pki = await issueCertificate(certificate.spec.dnsNames);
    const hmacKey = 'deploy-test-hmac-key';
    const running = await startRelay(await localConfigText(relay), { files: secretFiles(relay, { pki, hmacKey }), hmacKey });
    const port = endpoint(/^ {2}listen: (\S+)/m.exec(running.configText)[1]).port;
    const url = `https://127.0.0.1:${port}`;
    // Flux connects to the Provider's host and trusts the Secret's ca.crt, nothing else.
    const flux = { ca: pki['ca.crt'], servername: new URL(provider.spec.address).hostname };

    const ready = await httpsRequest(`${url}/readyz`, flux);
    assert.equal(ready.status, 200, ready.text);
    assert.equal((await httpsRequest(`${url}/healthz`, flux)).status, 200);
    const body = JSON.stringify(fluxEvent());
    const event = await httpsRequest(`${url}${new URL(provider.spec.address).pathname}`, {
      ...flux,
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Signature': signFlux(body, hmacKey) },
      body,
    });
    assert.equal(event.status, 202, event.text);
    // Verification is on: a name the certificate lacks, or another CA, is refused.
    await assert.rejects(httpsRequest(`${url}/readyz`, { ...flux, servername: 'fluxrelay.elsewhere.svc' }), /altnames|hostname/i);
    await assert.rejects(httpsRequest(`${url}/readyz`, { servername: flux.servername }), /self.signed|unable to (get|verify)/i);
    // And the listener speaks nothing else.
    await assert.rejects(request(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(5000) }));
    await running.stop();
  });
});

// ---------------------------------------------------------------------------------------------

describe('dashboard and alerts against a live /metrics', () => {
  let families;
  let base;
  let dir;

  before(async () => {
    base = relayOf(parseYamlDocuments(render('base')));
    // The base config itself, on loopback ports and a temp folder; its targets are unreachable
    // here, so the event below leaves a failed delivery attempt and every labelled series.
    const hmacKey = 'deploy-test-hmac-key';
    const relay = await startRelay(await localConfigText(base), { files: secretFiles(base, { hmacKey }), hmacKey });
    const response = await postEvent(relay, '/flux/events', fluxEvent());
    assert.equal(response.status, 202, response.text);
    const scrape = await waitFor(async () => {
      const { status, text: body } = await request(`${relay.adminUrl}/metrics`);
      return status === 200 && /^fluxrelay_deliveries_total\{/m.test(body) && body;
    }, { what: 'a delivery attempt in /metrics' });
    families = metricFamilies(scrape);
    dir = await makeTempDir('fluxrelay-it-rules-');
    await relay.stop();
  });

  it('has a dashboard whose every query reads exported metrics', async () => {
    const objects = parseYamlDocuments(render('base'));
    const data = find(objects, 'ConfigMap', 'fluxrelay-dashboard').data;
    const [file] = Object.keys(data);
    const dashboard = JSON.parse(data[file]);
    assert.equal(dashboard.uid, 'fluxrelay');
    const queries = [];
    const walk = (panels) => {
      for (const panel of panels || []) {
        for (const target of panel.targets || []) queries.push([panel.title, target.expr]);
        walk(panel.panels);
      }
    };
    walk(dashboard.panels);
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
      const labelValues = /^label_values\((.*),\s*\w+\)$/.exec(query);
      assert.ok(labelValues, `variable ${variable.name}: label_values(selector, label)`);
      queries.push([`$${variable.name}`, labelValues[1]]);
    }
    assert.ok(queries.length >= 10, 'the dashboard has its panels');
    for (const [where, expr] of queries) {
      const names = promqlMetricNames(expr);
      assert.ok(names.size > 0, `${where}: ${expr} reads a metric`);
      for (const name of names) assert.ok(isExported(name, families), `${where}: ${name} is in /metrics`);
    }
    const used = new Set(queries.flatMap(([, expr]) => [...promqlMetricNames(expr)]));
    for (const name of ['fluxrelay_events_received_total', 'fluxrelay_deliveries_total', 'fluxrelay_queue_depth', 'fluxrelay_dead_letters', 'fluxrelay_flux_object_failing']) {
      assert.ok(used.has(name), `the dashboard shows ${name}`);
    }
  });

  it('has alerts that promtool accepts, on exported metrics, firing when they should', async () => {
    const rule = find(parseYamlDocuments(render('base')), 'PrometheusRule', 'fluxrelay');
    const rulesFile = path.join(dir, 'rules.json'); // JSON is YAML to promtool
    await fsp.writeFile(rulesFile, JSON.stringify({ groups: rule.spec.groups }));
    run('promtool', ['check', 'rules', rulesFile]);

    const alerts = Object.fromEntries(rule.spec.groups.flatMap((g) => g.rules).filter((r) => r.alert).map((r) => [r.alert, r.expr]));
    assert.deepEqual(Object.keys(alerts).sort(), ['FluxObjectFailing', 'FluxrelayAbsent', 'FluxrelayConfigReloadFailed', 'FluxrelayDeadLettersGrowing', 'FluxrelayDeliveriesFailing']);
    // The object's own namespace label reaches Prometheus as exported, not as exported_namespace.
    const [endpoint] = find(parseYamlDocuments(render('base')), 'PodMonitor', 'fluxrelay').spec.podMetricsEndpoints;
    assert.equal(endpoint.honorLabels, true);
    for (const [name, expr] of Object.entries(alerts)) {
      for (const metric of promqlMetricNames(expr)) assert.ok(isExported(metric, families), `${name}: ${metric} is in /metrics`);
    }

    // Each alert's expression over made-up series: who it fires for, and who it spares.
    const firing = (name, by) => `count by (${by}) ((${alerts[name].trim()}))`;
    const tests = [
      {
        input_series: [],
        promql_expr_test: [{ expr: `count(${alerts.FluxrelayAbsent})`, eval_time: '1m', exp_samples: [{ labels: '{}', value: 1 }] }],
      },
      {
        input_series: [{ series: 'fluxrelay_build_info{version="0.1.0"}', values: '1x10' }],
        promql_expr_test: [{ expr: `count(${alerts.FluxrelayAbsent})`, eval_time: '5m', exp_samples: [] }],
      },
      {
        input_series: [
          { series: 'fluxrelay_deliveries_total{namespace="flux-system",target="alertmanager",outcome="retry"}', values: '0+1x30' },
          { series: 'fluxrelay_deliveries_total{namespace="flux-system",target="alertmanager",outcome="delivered"}', values: '7x30' },
          { series: 'fluxrelay_deliveries_total{namespace="flux-system",target="github-status",outcome="retry"}', values: '0+1x30' },
          { series: 'fluxrelay_deliveries_total{namespace="flux-system",target="github-status",outcome="delivered"}', values: '0+1x30' },
        ],
        promql_expr_test: [{ expr: firing('FluxrelayDeliveriesFailing', 'target'), eval_time: '20m', exp_samples: [{ labels: '{target="alertmanager"}', value: 1 }] }],
      },
      {
        input_series: [
          { series: 'fluxrelay_dead_letters{target="github-status"}', values: '0 0 0 1 1 2 2 2 2 2 2' },
          { series: 'fluxrelay_dead_letters{target="alertmanager"}', values: '3x10' },
        ],
        promql_expr_test: [{ expr: firing('FluxrelayDeadLettersGrowing', 'target'), eval_time: '10m', exp_samples: [{ labels: '{target="github-status"}', value: 1 }] }],
      },
      {
        input_series: [
          { series: 'fluxrelay_config_last_reload_successful{pod="fluxrelay-a"}', values: '1x10' },
          { series: 'fluxrelay_config_last_reload_successful{pod="fluxrelay-b"}', values: '1 1 0x8' },
        ],
        promql_expr_test: [{ expr: firing('FluxrelayConfigReloadFailed', 'pod'), eval_time: '5m', exp_samples: [{ labels: '{pod="fluxrelay-b"}', value: 1 }] }],
      },
      {
        // Two replicas report apps/podinfo failing, its reason changing after 5 minutes: one alert
        // after 15 minutes, naming the latest reason. apps/redis recovered after 10 minutes.
        input_series: [
          ...['fluxrelay-a', 'fluxrelay-b'].flatMap((pod) => [
            { series: `fluxrelay_flux_object_failing{pod="${pod}",kind="Kustomization",namespace="apps",name="podinfo",reason="BuildFailed"}`, values: '1x5' },
            { series: `fluxrelay_flux_object_failing{pod="${pod}",kind="Kustomization",namespace="apps",name="podinfo",reason="HealthCheckFailed"}`, values: '_x5 1x25' },
          ]),
          { series: 'fluxrelay_flux_object_failing{pod="fluxrelay-a",kind="HelmRelease",namespace="apps",name="redis",reason="InstallFailed"}', values: '1x10' },
        ],
        promql_expr_test: [
          { expr: firing('FluxObjectFailing', 'kind, namespace, name'), eval_time: '16m', exp_samples: [{ labels: '{kind="Kustomization",namespace="apps",name="podinfo"}', value: 1 }] },
        ],
        alert_rule_test: [
          { alertname: 'FluxObjectFailing', eval_time: '14m', exp_alerts: [] },
          {
            alertname: 'FluxObjectFailing',
            eval_time: '20m',
            exp_alerts: [{
              exp_labels: { severity: 'warning', kind: 'Kustomization', namespace: 'apps', name: 'podinfo' },
              exp_annotations: {
                summary: 'Kustomization apps/podinfo is failing',
                description: 'The latest event of Kustomization apps/podinfo has been an error for 15 minutes, reason HealthCheckFailed. The relay\'s status page shows its latest event.',
              },
            }],
          },
        ],
      },
    ].map((test) => ({ interval: '1m', ...test }));
    const testFile = path.join(dir, 'rules-test.json');
    await fsp.writeFile(testFile, JSON.stringify({ rule_files: [rulesFile], evaluation_interval: '1m', tests }));
    run('promtool', ['test', 'rules', testFile]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('container image', () => {
  const dockerfile = fs.readFileSync(path.join(deployDir, 'Dockerfile'), 'utf8');
  const runtimePackages = fs
    .readFileSync(path.join(deployDir, 'runtime-packages.txt'), 'utf8')
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean);

  it('builds in one stage and runs non-root in a slim one, with no HEALTHCHECK', () => {
    const stages = dockerfile.split(/^FROM /m).slice(1);
    assert.equal(stages.length, 2, 'two stages');
    const [build, runtime] = stages;
    assert.match(build, /^debian:bookworm AS build/);
    assert.match(build, /^RUN scripts\/install-deps\.sh --build\b/m, 'the build packages of `make`');
    assert.match(build, /^RUN deploy\/build-release\.sh \/build \/out$/m, 'the script the test below runs');
    assert.match(runtime, /^debian:bookworm-slim/);
    assert.match(runtime, /deploy\/runtime-packages\.txt/, 'the one list of runtime packages');
    assert.match(runtime, /^COPY --from=build \/out\/ \/$/m);
    const user = /^USER (\d+)(?::(\d+))?$/m.exec(runtime);
    assert.ok(user && Number(user[1]) > 0, 'a numeric, non-root USER');
    assert.match(runtime, /^ENTRYPOINT \["\/usr\/local\/bin\/fluxrelay"\]$/m);
    assert.ok(runtime.includes(`CMD ["serve", "--config", "${configFolder}/config.yaml"]`), 'CMD reads the config where Kubernetes mounts it');
    assert.doesNotMatch(dockerfile, /^HEALTHCHECK/m);
    for (const label of ['title', 'description', 'version', 'revision', 'source']) {
      assert.match(runtime, new RegExp(`org\\.opencontainers\\.image\\.${label}=`), `OCI label ${label}`);
    }
    // What the stages copy is in the build context.
    const ignore = fs.readFileSync(path.join(deployDir, 'Dockerfile.dockerignore'), 'utf8');
    for (const file of ['scripts/install-deps.sh', 'deploy/build-release.sh', 'deploy/runtime-packages.txt', 'CMakeLists.txt']) {
      assert.ok(ignore.includes(`!${file}`), `${file} is in the build context`);
    }
    const cmake = fs.readFileSync(path.join(repoRoot, 'CMakeLists.txt'), 'utf8');
    // Sources listed one a line, and those of one-line add_executable()s (bench/components.cpp).
    const sourceFolders = new Set([
      ...cmake.matchAll(/^\s+(\w+)\/[\w/.-]+\.(?:cpp|html)\b/gm),
      ...cmake.matchAll(/^add_executable\([\w-]+ (\w+)\/[\w/.-]+\.cpp\)/gm),
    ].map((m) => m[1]));
    assert.ok(sourceFolders.size > 3, 'CMakeLists.txt lists its sources');
    for (const folder of [...sourceFolders, 'test']) {
      assert.match(ignore, new RegExp(`^!${folder}/$`, 'm'), `${folder}/ is in the build context`);
    }
  });

  // The build script on the tests' own build folder: it checks that folder belongs to this tree,
  // builds the binary (already up to date: no second compilation inside the CI budget), strips
  // and installs it like the image's build stage. FLUXRELAY_RELEASE_BUILD=fresh compiles a new
  // build folder instead, exactly as the image does (minutes).
  it('builds a binary that links only what the runtime stage installs', async (t) => {
    let buildDir = path.dirname(relayBinary);
    if (process.env.FLUXRELAY_RELEASE_BUILD === 'fresh') {
      buildDir = path.join(await makeTempDir('fluxrelay-it-release-'), 'build');
    } else if (!fs.existsSync(path.join(buildDir, 'CMakeCache.txt'))) {
      t.skip(`${relayBinary} is not in a CMake build folder; set FLUXRELAY_RELEASE_BUILD=fresh to build one`);
      return;
    } else if (/^FLUXRELAY_SANITIZE:BOOL=ON$/m.test(fs.readFileSync(path.join(buildDir, 'CMakeCache.txt'), 'utf8'))) {
      // make test-sanitize: that binary links libasan and libubsan, which no image ships.
      t.skip(`${buildDir} is a sanitizer build; set FLUXRELAY_RELEASE_BUILD=fresh to build a release one`);
      return;
    }
    const out = path.join(await makeTempDir('fluxrelay-it-image-'), 'out');
    run(path.join(deployDir, 'build-release.sh'), [buildDir, out]);
    const binary = path.join(out, 'usr', 'local', 'bin', 'fluxrelay');
    assert.match(run(binary, ['version']), /\d+\.\d+\.\d+/);
    assert.doesNotMatch(run('readelf', ['--section-headers', '--wide', binary]), /\.symtab|\.debug_/, 'the installed binary is stripped');

    const libraries = [];
    for (const line of run('ldd', [binary]).split('\n')) {
      assert.doesNotMatch(line, /not found/, line);
      const file = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)/.exec(line)?.[1];
      if (file) libraries.push(file);
    }
    assert.ok(libraries.length > 3, 'ldd lists the shared libraries');
    const needed = new Set(['ca-certificates']); // not linked: OpenSSL reads it from the default paths
    for (const library of libraries) {
      const owner = debianPackageOf(library);
      assert.ok(runtimePackages.includes(owner), `${library} (${owner}) is in deploy/runtime-packages.txt`);
      needed.add(owner);
    }
    assert.deepEqual([...runtimePackages].sort(), [...needed].sort(), 'deploy/runtime-packages.txt lists nothing unneeded');
  });

  it('lists runtime packages Debian 12 has', () => {
    const shown = run('apt-cache', ['show', '--no-all-versions', ...runtimePackages]);
    const known = new Set([...shown.matchAll(/^Package: (\S+)$/gm)].map((match) => match[1]));
    assert.deepEqual(runtimePackages.filter((name) => !known.has(name)), []);
  });
});

// The Debian package that owns a file, trying the paths merged /usr makes equivalent.
function debianPackageOf(file) {
  const candidates = new Set([file, fs.realpathSync(file)]);
  for (const candidate of [...candidates]) candidates.add(candidate.startsWith('/usr/') ? candidate.slice(4) : `/usr${candidate}`);
  for (const candidate of candidates) {
    const result = spawnSync('dpkg', ['-S', candidate], { encoding: 'utf8' });
    const owner = result.status === 0 && /^([^:\s,]+)(?::[\w-]+)?: /m.exec(result.stdout);
    if (owner) return owner[1];
  }
  assert.fail(`no Debian package owns ${file}`);
}
