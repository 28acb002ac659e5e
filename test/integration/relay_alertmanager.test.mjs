// Flux events through fluxrelay into a real Alertmanager: Flux-compatible labels and annotations.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { cleanup, expectedFluxLabels, fluxEvent, postEvent, startAlertmanager, startRelay, baseConfig, uniqueSuffix, waitFor } from './harness.mjs';

describe("Flux's generic-hmac test vector", () => {
  let am;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    relay = await startRelay(baseConfig({ alertmanagerUrl: am.url }), { hmacKey: '7152fed34dd6149a7c75a276c510da27cb6f82b0' });
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('verifies the signature over the raw body bytes', async () => {
    const body =
      '{"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},"severity":"info","timestamp":"2022-09-30T06:40:29Z","message":"message","reason":"reason","metadata":{"test":"metadata"},"reportingController":"source-controller","reportingInstance":"source-controller-xyz"}';
    const response = await postEvent(relay, '/flux/events', body, {
      key: null,
      headers: { 'X-Signature': 'sha256=65b018549b1254e7226d1c08f9567ee45bc9de0fc4e7b1a40253f9a018b08be7' },
    });
    assert.equal(response.status, 202, response.text);

    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ name: 'webapp' });
      return alerts.length > 0 && alerts;
    }, { what: 'alert for GitRepository webapp' });
    assert.deepEqual(alert.labels, {
      alertname: 'FluxGitRepositoryReason',
      severity: 'info',
      reason: 'reason',
      kind: 'GitRepository',
      name: 'webapp',
      namespace: 'gitops-system',
      reportingcontroller: 'source-controller',
      test: 'metadata',
    });
    assert.deepEqual(alert.annotations, { message: 'message' });
  });
});

describe('flux source → alertmanager target', () => {
  let am;
  let relay;

  before(async () => {
    am = await startAlertmanager();
    relay = await startRelay(baseConfig({ alertmanagerUrl: am.url }));
  });

  after(async () => {
    try {
      if (relay) await relay.stop();
    } finally {
      await cleanup();
    }
  });

  it('delivers a signed Kustomization error as a Flux alert', async () => {
    const name = `apps-${uniqueSuffix()}`;
    const event = fluxEvent({
      involvedObject: { kind: 'Kustomization', namespace: 'flux-system', name },
      severity: 'error',
      reason: 'ReconciliationFailed',
      message: `Kustomization/flux-system/${name} dry-run failed: Deployment/default/podinfo: spec.replicas: Invalid value: -1`,
      metadata: { revision: 'main@sha1:4f2e0c1f8b5a3d9e7c6b5a4d3c2b1a0f9e8d7c6b' },
    });

    const response = await postEvent(relay, '/flux/events', event);
    assert.equal(response.status, 202, response.text);
    assert.equal(response.json?.status, 'accepted');
    assert.equal(typeof response.json?.id, 'string');
    assert.notEqual(response.json.id, '');

    const [alert] = await waitFor(
      async () => {
        const alerts = await am.alerts({ name });
        return alerts.length > 0 && alerts;
      },
      { what: `alert for Kustomization ${name} in Alertmanager` },
    );
    assert.deepEqual(alert.labels, {
      alertname: 'FluxKustomizationReconciliationfailed',
      severity: 'error',
      reason: 'ReconciliationFailed',
      kind: 'Kustomization',
      name,
      namespace: 'flux-system',
      reportingcontroller: 'kustomize-controller',
      revision: 'main@sha1:4f2e0c1f8b5a3d9e7c6b5a4d3c2b1a0f9e8d7c6b',
    });
    assert.deepEqual(alert.annotations, { message: event.message });
    assert.equal(Date.parse(alert.startsAt), Date.parse(event.timestamp), 'startsAt is the event timestamp');
    assert.equal(alert.status.state, 'active');

    // Exactly one alert for the object: one event, one alert.
    assert.equal((await am.alerts({ name })).length, 1);
  });

  it('moves metadata summary to an annotation', async () => {
    const name = `infra-${uniqueSuffix()}`;
    const event = fluxEvent({
      involvedObject: { kind: 'HelmRelease', namespace: 'monitoring', name, apiVersion: 'helm.toolkit.fluxcd.io/v2' },
      reason: 'UpgradeFailed',
      message: `Helm upgrade failed for release monitoring/${name} with chart kube-prometheus-stack@58.2.1: context deadline exceeded`,
      reportingController: 'helm-controller',
      metadata: { revision: '58.2.1', summary: 'Cluster home: monitoring stack', cluster: 'home' },
    });
    const response = await postEvent(relay, '/flux/events', event);
    assert.equal(response.status, 202, response.text);

    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ name });
      return alerts.length > 0 && alerts;
    }, { what: `alert for HelmRelease ${name}` });
    assert.deepEqual(alert.labels, expectedFluxLabels(event));
    assert.equal(alert.labels.alertname, 'FluxHelmReleaseUpgradefailed');
    assert.equal(alert.labels.cluster, 'home');
    assert.equal(alert.labels.summary, undefined);
    assert.deepEqual(alert.annotations, { message: event.message, summary: 'Cluster home: monitoring stack' });
  });

  it('accepts the API-group-prefixed metadata controllers send and normalizes it', async () => {
    const name = `cluster-${uniqueSuffix()}`;
    const event = fluxEvent({
      involvedObject: { kind: 'Kustomization', namespace: 'flux-system', name },
      reason: 'BuildFailed',
      message: `kustomize build failed: accumulating resources from 'apps/${name}': no such file or directory`,
      metadata: undefined,
    });
    event.metadata = {
      'kustomize.toolkit.fluxcd.io/revision': 'main@sha1:0123456789abcdef0123456789abcdef01234567',
      'kustomize.toolkit.fluxcd.io/checksum': 'dropped',
      'event.toolkit.fluxcd.io/cluster': 'home',
      'helm.toolkit.fluxcd.io/other-group': 'dropped',
    };
    const response = await postEvent(relay, '/flux/events', event);
    assert.equal(response.status, 202, response.text);

    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ name });
      return alerts.length > 0 && alerts;
    }, { what: `alert for Kustomization ${name}` });
    assert.deepEqual(alert.labels, {
      alertname: 'FluxKustomizationBuildfailed',
      severity: 'error',
      reason: 'BuildFailed',
      kind: 'Kustomization',
      name,
      namespace: 'flux-system',
      reportingcontroller: 'kustomize-controller',
      revision: 'main@sha1:0123456789abcdef0123456789abcdef01234567',
      cluster: 'home',
    });
  });

  it('keeps a null timestamp, non-ASCII text and a charset parameter intact', async () => {
    const name = `unicode-${uniqueSuffix()}`;
    const event = fluxEvent({
      involvedObject: { kind: 'HelmRelease', namespace: 'media', name },
      timestamp: null,
      reason: 'UpgradeFailed',
      reportingController: 'helm-controller',
      message: `Helm upgrade failed for "${name}": ✗ échec — 100% \\ done\n(second line)`,
      metadata: { revision: '1.2.3' },
    });
    const response = await postEvent(relay, '/flux/events', event, { contentType: 'application/json; charset=utf-8' });
    assert.equal(response.status, 202, response.text);
    const [alert] = await waitFor(async () => {
      const alerts = await am.alerts({ name });
      return alerts.length > 0 && alerts;
    }, { what: `alert for ${name}` });
    assert.deepEqual(alert.labels, expectedFluxLabels(event));
    assert.deepEqual(alert.annotations, { message: event.message });
    assert.ok(!Number.isNaN(Date.parse(alert.startsAt)), 'a startsAt even without an event timestamp');
  });

  it('logs JSON lines on stderr', () => {
    const lines = relay.logLines();
    assert.ok(lines.length > 0, 'some log lines');
    for (const line of lines) {
      assert.equal(line.unparsed, undefined, `not a JSON log line: ${line.unparsed}`);
      assert.equal(typeof line, 'object');
      assert.equal(typeof line.level, 'string', `a level in ${JSON.stringify(line)}`);
    }
  });

  it('delivers every event of a burst of distinct events', async () => {
    const batch = uniqueSuffix();
    // More events than one Alertmanager request carries, all posted at once.
    const count = 100;
    const kinds = [
      ['Kustomization', 'kustomize-controller', 'HealthCheckFailed'],
      ['HelmRelease', 'helm-controller', 'InstallFailed'],
      ['GitRepository', 'source-controller', 'GitOperationFailed'],
      ['OCIRepository', 'source-controller', 'OCIArtifactPullFailed'],
      ['HelmRepository', 'source-controller', 'IndexationFailed'],
      ['Kustomization', 'kustomize-controller', 'ReconciliationFailed'],
      ['HelmRelease', 'helm-controller', 'UpgradeFailed'],
      ['Kustomization', 'kustomize-controller', 'DependencyNotReady'],
    ];
    const events = Array.from({ length: count }, (_, index) => {
      const [kind, controller, reason] = kinds[index % kinds.length];
      return fluxEvent({
        involvedObject: { kind, namespace: `ns-${index}`, name: `burst-${batch}-${index}` },
        reason,
        reportingController: controller,
        message: `${reason} for object ${index} of burst ${batch}`,
        metadata: { batch },
      });
    });

    const responses = await Promise.all(events.map((event) => postEvent(relay, '/flux/events', event)));
    for (const response of responses) assert.equal(response.status, 202, response.text);
    const ids = new Set(responses.map((response) => response.json?.id));
    assert.equal(ids.size, events.length, 'every accepted event has its own id');

    const alerts = await waitFor(async () => {
      const found = await am.alerts({ batch });
      return found.length === events.length && found;
    }, { what: `${events.length} alerts of burst ${batch}` });
    const byName = new Map(alerts.map((alert) => [alert.labels.name, alert]));
    for (const event of events) {
      const alert = byName.get(event.involvedObject.name);
      assert.ok(alert, `alert for ${event.involvedObject.name}`);
      assert.deepEqual(alert.labels, expectedFluxLabels(event));
      assert.deepEqual(alert.annotations, { message: event.message });
    }
  });
});
