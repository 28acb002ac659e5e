// The configuration's JSON Schema (`fluxrelay schema`, committed as config/fluxrelay.schema.json)
// against a well-kept validator (Ajv, draft 2020-12) and against the loader (`check-config
// --syntax-only`): both accept every config in the repository and the valid corpus, both refuse
// the invalid corpus, and what only the loader can refuse is a corpus of its own.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';

import Ajv2020 from 'ajv/dist/2020.js';
import { parse } from 'yaml';

import { cleanup, makeTempDir, repoRoot, runRelayCommand } from './harness.mjs';

const corpus = path.join(repoRoot, 'test', 'integration', 'fixtures', 'schema');
const committed = path.join(repoRoot, 'config', 'fluxrelay.schema.json');

// Every configuration the repository ships or tests with, beyond the corpus.
const shipped = [
  'config/example.yaml',
  'deploy/kubernetes/base/config.yaml',
  'deploy/kubernetes/tls/config.yaml',
  'deploy/kubernetes/examples/home-ops/app/config.yaml',
].map((file) => path.join(repoRoot, file));

async function yamlFiles(folder) {
  return (await fs.readdir(folder)).filter((name) => name.endsWith('.yaml')).sort().map((name) => path.join(folder, name));
}

async function schemaValidator() {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  return ajv.compile(JSON.parse(await fs.readFile(committed, 'utf8')));
}

async function schemaProblems(validate, file) {
  const document = parse(await fs.readFile(file, 'utf8'));
  return validate(document) ? [] : validate.errors.map((error) => `${error.instancePath || '/'} ${error.message}`);
}

async function loaderAccepts(file) {
  const result = await runRelayCommand(['check-config', '--syntax-only', file]);
  assert.ok(result.code === 0 || result.code === 1, `${file}: check-config exit ${result.code}: ${result.stderr}`);
  return { accepted: result.code === 0, output: result.stdout };
}

describe('the configuration schema', () => {
  after(cleanup);

  it('is what `fluxrelay schema` prints, byte for byte', async () => {
    const printed = await runRelayCommand(['schema']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout, await fs.readFile(committed, 'utf8'), 'run `build/fluxrelay schema > config/fluxrelay.schema.json`');
  });

  it('accepts every config the repository ships, as the loader does; each names the schema for editors', async () => {
    const validate = await schemaValidator();
    for (const file of shipped) {
      assert.deepEqual(await schemaProblems(validate, file), [], `${file}: the schema refuses it`);
      const loader = await loaderAccepts(file);
      assert.ok(loader.accepted, `${file}: the loader refuses it:\n${loader.output}`);
      const firstLine = (await fs.readFile(file, 'utf8')).split('\n')[0];
      const match = /^# yaml-language-server: \$schema=(\S+)$/.exec(firstLine);
      assert.ok(match, `${file} starts with a yaml-language-server line`);
      assert.equal(path.resolve(path.dirname(file), match[1]), committed, `${file} names the committed schema`);
    }
  });

  it('accepts import-flux\'s output for the home-ops manifests, as the loader does', async () => {
    const fixtures = path.join(repoRoot, 'test', 'integration', 'fixtures', 'home-ops');
    const imported = await runRelayCommand(['import-flux', ...(await yamlFiles(fixtures))]);
    assert.equal(imported.code, 0, imported.stderr);
    const file = path.join(await makeTempDir(), 'imported.yaml');
    await fs.writeFile(file, imported.stdout);
    assert.deepEqual(await schemaProblems(await schemaValidator(), file), []);
    assert.ok((await loaderAccepts(file)).accepted);
  });

  it('the valid corpus: accepted by both', async () => {
    const validate = await schemaValidator();
    for (const file of await yamlFiles(path.join(corpus, 'valid'))) {
      assert.deepEqual(await schemaProblems(validate, file), [], `${file}: the schema refuses it`);
      const loader = await loaderAccepts(file);
      assert.ok(loader.accepted, `${file}: the loader refuses it:\n${loader.output}`);
    }
  });

  it('the invalid corpus: refused by both', async () => {
    const validate = await schemaValidator();
    const files = await yamlFiles(path.join(corpus, 'invalid'));
    assert.ok(files.length >= 8);
    for (const file of files) {
      assert.notDeepEqual(await schemaProblems(validate, file), [], `${file}: the schema accepts it`);
      assert.ok(!(await loaderAccepts(file)).accepted, `${file}: the loader accepts it`);
    }
  });

  it('what JSON Schema cannot express: the loader alone refuses it', async () => {
    const validate = await schemaValidator();
    for (const file of await yamlFiles(path.join(corpus, 'loader-only'))) {
      assert.deepEqual(await schemaProblems(validate, file), [], `${file}: the schema refuses it after all: move it to invalid/`);
      assert.ok(!(await loaderAccepts(file)).accepted, `${file}: the loader accepts it`);
    }
  });
});
