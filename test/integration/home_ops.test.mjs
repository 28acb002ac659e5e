// The home-ops route of config/example.yaml against realistic Flux events: errors of listed kinds
// reach Alertmanager; network noise, info events and unlisted kinds are dropped.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';

import { DEFAULT_HMAC_KEY, cleanup, expectedFluxLabels, fluxEvent, freePort, postEvent, repoRoot, startAlertmanager, startRelay, uniqueSuffix, waitFor } from './harness.mjs';

// config/example.yaml with this test's ports, Alertmanager and storage folder.
async function exampleConfig(alertmanagerUrl) {
  let text = await fs.readFile(path.join(repoRoot, 'config', 'example.yaml'), 'utf8');
  const replacements = [
    ['127.0.0.1:8080', `127.0.0.1:${await freePort()}`],
    ['127.0.0.1:9090', `127.0.0.1:${await freePort()}`],
    ['http://127.0.0.1:9093', alertmanagerUrl],
    ['./fluxrelay-data', './data'],
  ];
  for (const [from, to] of replacements) {
    assert.ok(text.includes(from), `config/example.yaml contains ${from}`);
    text = text.replaceAll(from, to);
  }
  assert.match(text, /hmacKeyFile: \.\/dev-secrets\/flux-hmac/);
  return text;
}

describe('home-ops route (config/example.yaml)', () => {
  let am;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    relay = await startRelay(await exampleConfig(am.url), {
      files: { 'dev-secrets/flux-hmac': DEFAULT_HMAC_KEY },
      hmacKey: DEFAULT_HMAC_KEY,
    });
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('forwards real failures and drops the noise', async () => {
    const run = uniqueSuffix();
    const event = (name, fields) => fluxEvent({ ...fields, involvedObject: { ...fields.involvedObject, name: `${name}-${run}` }, metadata: { run } });

    const dropped = {
      // exclusionList "error.*lookup.*github"
      'dns lookup of a github host': event('bjw-s', {
        involvedObject: { kind: 'HelmRepository', namespace: 'flux-system', apiVersion: 'source.toolkit.fluxcd.io/v1' },
        reason: 'Failed',
        reportingController: 'source-controller',
        message:
          'failed to fetch Helm repository index: error getting index: Get "https://bjw-s.github.io/helm-charts/index.yaml": dial tcp: lookup bjw-s.github.io on 10.43.0.10:53: server misbehaving',
      }),
      // exclusionList "dial.*tcp.*timeout" (no "error" before "lookup": the first pattern misses it)
      'clone timing out': event('home-kubernetes', {
        involvedObject: { kind: 'GitRepository', namespace: 'flux-system', apiVersion: 'source.toolkit.fluxcd.io/v1' },
        reason: 'GitOperationFailed',
        reportingController: 'source-controller',
        message:
          "failed to checkout and determine revision: unable to clone 'https://github.com/onedr0p/home-ops': dial tcp: lookup github.com: i/o timeout",
      }),
      // exclusionList "dial.*tcp.*unreachable"
      'network unreachable': event('cluster-apps', {
        involvedObject: { kind: 'OCIRepository', namespace: 'flux-system', apiVersion: 'source.toolkit.fluxcd.io/v1beta2' },
        reason: 'OCIArtifactPullFailed',
        reportingController: 'source-controller',
        message: 'failed to pull artifact from \'oci://ghcr.io/onedr0p/manifests\': Get "https://ghcr.io/v2/": dial tcp 10.0.0.1:443: connect: network is unreachable',
      }),
      // exclusionList "waiting.*socket"
      'waiting for a socket': event('flux', {
        involvedObject: { kind: 'FluxInstance', namespace: 'flux-system', apiVersion: 'fluxcd.controlplane.io/v1' },
        reason: 'ReconciliationFailed',
        reportingController: 'flux-operator',
        message: 'failed to apply manifests: Internal error occurred: waiting for socket /run/k3s/containerd/containerd.sock to be ready',
      }),
      // eventSeverity: error
      'info event': event('cluster-apps-rook-ceph', {
        involvedObject: { kind: 'Kustomization', namespace: 'flux-system' },
        severity: 'info',
        reason: 'ReconciliationSucceeded',
        message: 'Reconciliation finished in 2.31s, next run in 30m0s',
      }),
      // eventSources: kind not listed
      'unlisted kind': event('flux-system', {
        involvedObject: { kind: 'ImageUpdateAutomation', namespace: 'flux-system', apiVersion: 'image.toolkit.fluxcd.io/v1beta2' },
        reason: 'ReconciliationFailed',
        reportingController: 'image-automation-controller',
        message: 'failed to push to remote: authentication required',
      }),
    };

    const forwarded = {
      'health check failure': event('cluster-apps-immich', {
        involvedObject: { kind: 'Kustomization', namespace: 'flux-system' },
        reason: 'HealthCheckFailed',
        message:
          "Health check failed after 5m0s: timeout waiting for: [HelmRelease/default/immich status: 'Failed', Deployment/default/immich-server status: 'InProgress']",
      }),
      'helm install failure': event('immich', {
        involvedObject: { kind: 'HelmRelease', namespace: 'default', apiVersion: 'helm.toolkit.fluxcd.io/v2' },
        reason: 'InstallFailed',
        reportingController: 'helm-controller',
        message:
          'Helm install failed for release default/immich with chart app-template@3.5.1: context deadline exceeded',
      }),
    };

    // The dropped ones first: once the forwarded ones (posted after) are in Alertmanager, a
    // dropped one that were going to be sent would have been sent too.
    for (const [what, body] of Object.entries(dropped)) {
      const response = await postEvent(relay, '/flux/events', body);
      assert.equal(response.status, 202, `${what}: ${response.text}`);
    }
    for (const [what, body] of Object.entries(forwarded)) {
      const response = await postEvent(relay, '/flux/events', body);
      assert.equal(response.status, 202, `${what}: ${response.text}`);
    }

    const expectedNames = Object.values(forwarded).map((body) => body.involvedObject.name).sort();
    await waitFor(async () => {
      const names = (await am.alerts({ run })).map((alert) => alert.labels.name);
      return expectedNames.every((name) => names.includes(name));
    }, { what: `alerts for ${expectedNames.join(', ')}` });

    const alerts = await am.alerts({ run });
    assert.deepEqual(alerts.map((alert) => alert.labels.name).sort(), expectedNames, 'only the forwarded events became alerts');
    for (const body of Object.values(forwarded)) {
      const alert = alerts.find((candidate) => candidate.labels.name === body.involvedObject.name);
      assert.deepEqual(alert.labels, expectedFluxLabels(body));
      assert.deepEqual(alert.annotations, { message: body.message });
    }
    assert.equal(alerts.find((a) => a.labels.kind === 'Kustomization').labels.alertname, 'FluxKustomizationHealthcheckfailed');
    assert.equal(alerts.find((a) => a.labels.kind === 'HelmRelease').labels.alertname, 'FluxHelmReleaseInstallfailed');
  });
});
