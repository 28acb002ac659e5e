// `fluxrelay check-config` (also --syntax-only, for CI without the secrets) and `fluxrelay version`:
// exit codes, and every config error located as FILE:LINE:COL.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';

import { cleanup, makeTempDir, repoRoot, runRelayCommand } from './harness.mjs';

const GOOD = `server:
  listen: 127.0.0.1:18080
admin:
  listen: 127.0.0.1:19090
storage:
  path: ./data
sources:
  - name: flux
    type: flux
    path: /flux/events
    hmacKeyFile: ./flux-hmac
targets:
  - name: alertmanager
    type: alertmanager
    address: http://127.0.0.1:9093/api/v2/alerts
    retry: {initialInterval: 100ms, maxInterval: 1s}
routes:
  - name: errors
    source: flux
    eventSeverity: error
    eventSources:
      - {kind: Kustomization, name: "*"}
    exclusionList: ["dial.*tcp.*timeout"]
    dedup: {window: 1h30m}
    targets: [alertmanager]
`;

// Four mistakes, one per line marked below; line numbers are 1-based.
const BAD_LINES = [
  'server:',
  '  listen: 127.0.0.1:18080',
  '  listne: 127.0.0.1:18081', // 3: unknown key
  'admin:',
  '  listen: 127.0.0.1:19090',
  'sources:',
  '  - name: flux',
  '    type: flux',
  '    path: /flux/events',
  'targets:',
  '  - name: alertmanager',
  '    type: alertmanager',
  '    address: http://127.0.0.1:9093/api/v2/alerts',
  '    timeout: 5 parsecs', // 14: bad duration
  'routes:',
  '  - name: errors',
  '    source: flux',
  '    exclusionList: ["dial.*tcp.*(timeout"]', // 18: invalid regex
  '    targets: [alertmanager, pagerduty]', // 19: dangling target
];
const BAD = `${BAD_LINES.join('\n')}\n`;

describe('check-config', () => {
  after(cleanup);

  it('accepts a valid file with exit 0', async () => {
    const dir = await makeTempDir();
    const file = path.join(dir, 'good.yaml');
    await fs.writeFile(file, GOOD);
    await fs.writeFile(path.join(dir, 'flux-hmac'), 'key');
    const result = await runRelayCommand(['check-config', file]);
    assert.equal(result.code, 0, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  });

  it('accepts config/example.yaml', async () => {
    const result = await runRelayCommand(['check-config', path.join(repoRoot, 'config', 'example.yaml')]);
    assert.equal(result.code, 0, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  });

  it('reports every error as FILE:LINE:COL with exit 1', async () => {
    const dir = await makeTempDir();
    const file = path.join(dir, 'bad.yaml');
    await fs.writeFile(file, BAD);
    const result = await runRelayCommand(['check-config', file]);
    const output = `${result.stdout}\n${result.stderr}`;
    assert.equal(result.code, 1, output);

    const located = (line) => {
      const pattern = new RegExp(`^${escapeRegExp(file)}:${line}:(\\d+): (.+)$`, 'm');
      const match = pattern.exec(output);
      assert.ok(match, `an error located at ${file}:${line}:COL in:\n${output}`);
      const column = Number(match[1]);
      assert.ok(column >= 1 && column <= BAD_LINES[line - 1].length + 1, `column ${column} inside line ${line}`);
      return match[2];
    };
    assert.match(located(3), /listne/, 'unknown key named');
    assert.match(located(14), /5 parsecs|duration/i, 'bad duration reported');
    assert.match(located(18), /regex|regular expression|pattern|dial\.\*tcp/i, 'invalid regex reported');
    assert.match(located(19), /pagerduty/, 'dangling target named');
  });

  it('--syntax-only passes the shipped configs and import-flux\'s output for home-ops, whose secrets are not here', async () => {
    const deployConfig = path.join(repoRoot, 'deploy', 'kubernetes', 'base', 'config.yaml');
    const full = await runRelayCommand(['check-config', deployConfig]);
    assert.equal(full.code, 1, 'without the flag the missing secret files fail it');
    assert.match(full.stdout, /cannot read hmacKeyFile/);

    const dir = await makeTempDir();
    const fixtures = path.join(repoRoot, 'test', 'integration', 'fixtures', 'home-ops');
    const manifests = (await fs.readdir(fixtures)).map((name) => path.join(fixtures, name));
    const imported = await runRelayCommand(['import-flux', ...manifests]);
    assert.equal(imported.code, 0, imported.stderr);
    const importedFile = path.join(dir, 'imported.yaml');
    await fs.writeFile(importedFile, imported.stdout);

    const files = [deployConfig, path.join(repoRoot, 'config', 'example.yaml'), importedFile];
    const result = await runRelayCommand(['check-config', '--syntax-only', ...files]);
    assert.equal(result.code, 0, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
    for (const file of files) assert.ok(result.stdout.includes(`${file}: ok (syntax only`), `${file} reported ok`);
  });

  it('--syntax-only still finds everything the text decides, in each file, with exit 1; no file is exit 2', async () => {
    const dir = await makeTempDir();
    const good = path.join(dir, 'good.yaml');
    const bad = path.join(dir, 'bad.yaml');
    await fs.writeFile(good, GOOD);  // its hmacKeyFile is not there: not read
    await fs.writeFile(bad, BAD);
    const result = await runRelayCommand(['check-config', '--syntax-only', good, bad]);
    assert.equal(result.code, 1, result.stdout);
    assert.ok(result.stdout.includes(`${good}: ok`), result.stdout);
    assert.match(result.stdout, /unknown key 'listne' in server \(did you mean 'listen'\?\)/);
    assert.match(result.stdout, /pagerduty/);
    assert.ok(!result.stdout.includes(`${bad}: ok`), result.stdout);

    const usage = await runRelayCommand(['check-config', '--syntax-only']);
    assert.equal(usage.code, 2, usage.stderr);
  });

  it('fails with exit 1 on a missing file', async () => {
    const dir = await makeTempDir();
    const result = await runRelayCommand(['check-config', path.join(dir, 'missing.yaml')]);
    assert.equal(result.code, 1, `${result.stdout}\n${result.stderr}`);
    assert.match(`${result.stdout}\n${result.stderr}`, /missing\.yaml/);
  });
});

describe('version', () => {
  it('prints a version and exits 0', async () => {
    const result = await runRelayCommand(['version']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /\d+\.\d+\.\d+/);
  });
});

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
