// A GitHub REST API stand-in that checks requests the way GitHub does: GitHub's own OpenAPI
// description (@octokit/openapi) for paths and bodies, the headers GitHub asks for, credentials,
// and the App JWT signature. Shared by the tests whose relay talks to GitHub.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

import Ajv from 'ajv';

// ---------------------------------------------------------------------------------------------
// GitHub's OpenAPI description, checked with Ajv. Its schemas are OpenAPI 3.0's JSON Schema
// (draft 4 to 7, with `nullable`); OpenAPI's own words (example, x-github, ...) are annotations,
// and so are formats, as GitHub documents rather than enforces most of them.

const require = createRequire(import.meta.url);
const openapiFile = path.join(path.dirname(require.resolve('@octokit/openapi/package.json')), 'generated', 'api.github.com.json');
const openapi = JSON.parse(fs.readFileSync(openapiFile, 'utf8'));

const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, validateSchema: false });
ajv.addSchema(openapi, 'github');

function resolveRef(ref) {
  assert.ok(ref.startsWith('#/'), `only local $refs are resolved: ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .reduce((node, key) => {
      assert.ok(node && key in node, `$ref ${ref} does not resolve`);
      return node[key];
    }, openapi);
}

// A schema of the description with its local $refs pointing into the registered document.
function anchored(schema) {
  if (Array.isArray(schema)) return schema.map(anchored);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([key, value]) => [key, key === '$ref' && value.startsWith('#/') ? `github${value}` : anchored(value)]),
  );
}

const compiled = new Map();

// Returns the list of problems, [] when `value` satisfies `schema`.
function validate(schema, value, where = '$') {
  if (!compiled.has(schema)) compiled.set(schema, ajv.compile(anchored(schema)));
  const check = compiled.get(schema);
  return check(value) ? [] : check.errors.map((error) => `${where}${error.instancePath.replaceAll('/', '.')}: ${error.message}`);
}

// An operation of the description: its path template as a regex, parameters and schemas.
function operation(pathTemplate, method) {
  const op = openapi.paths[pathTemplate]?.[method];
  assert.ok(op, `${method.toUpperCase()} ${pathTemplate} is not in GitHub's OpenAPI description`);
  const names = [];
  const pattern = pathTemplate.replace(/\{([^}]+)\}/g, (_, name) => {
    names.push(name);
    return '([^/]+)';
  });
  return {
    id: op.operationId,
    regex: new RegExp(`^${pattern}$`),
    names,
    parameters: (op.parameters || []).map((p) => (p.$ref ? resolveRef(p.$ref) : p)),
    body: op.requestBody,
    responses: op.responses,
  };
}

const createStatus = operation('/repos/{owner}/{repo}/statuses/{sha}', 'post');
const createToken = operation('/app/installations/{installation_id}/access_tokens', 'post');
const listDeployments = operation('/repos/{owner}/{repo}/deployments', 'get');
const createDeployment = operation('/repos/{owner}/{repo}/deployments', 'post');
const createDeploymentStatus = operation('/repos/{owner}/{repo}/deployments/{deployment_id}/statuses', 'post');
assert.equal(createStatus.id, 'repos/create-commit-status');
assert.equal(createToken.id, 'apps/create-installation-access-token');
assert.equal(listDeployments.id, 'repos/list-deployments');
assert.equal(createDeployment.id, 'repos/create-deployment');
assert.equal(createDeploymentStatus.id, 'repos/create-deployment-status');

// Query parameters against their schemas; a parameter the operation does not describe is a violation.
function validateQuery(op, searchParams) {
  const problems = [];
  for (const [name, value] of searchParams) {
    const parameter = op.parameters.find((p) => p.in === 'query' && p.name === name);
    if (!parameter) {
      problems.push(`query parameter '${name}' is not described`);
      continue;
    }
    const typed = parameter.schema.type === 'integer' ? (/^\d+$/.test(value) ? Number(value) : value) : value;
    problems.push(...validate(parameter.schema, typed, `query.${name}`));
  }
  return problems;
}

// Path parameters against their schemas (path values are text: integers must be digits).
function validatePath(op, match) {
  const problems = [];
  op.names.forEach((name, index) => {
    const value = decodeURIComponent(match[index + 1]);
    const parameter = op.parameters.find((p) => p.in === 'path' && p.name === name);
    if (!parameter) return problems.push(`path parameter '${name}' is not described`);
    const typed = parameter.schema.type === 'integer' ? (/^\d+$/.test(value) ? Number(value) : value) : value;
    problems.push(...validate(parameter.schema, typed, `path.${name}`));
  });
  return problems;
}

function responseSchema(op, status) {
  return op.responses[status].content['application/json'].schema;
}

// ---------------------------------------------------------------------------------------------
// The stand-in: GitHub Enterprise's layout (API under /api/v3 of the repository's host), so the
// relay derives the API base from `address` exactly as it does for a real GHE host.

const SUPPORTED_API_VERSIONS = new Set(['2022-11-28']);
// GitHub answers 422 "description is too long (maximum is 140 characters)".
const MAX_DESCRIPTION = 140;

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A stand-in that knows one GitHub App installation, and the App's private key (PKCS#1, as GitHub
// hands App keys out) for the relay's privateKeyFile.
export async function startGitHubAppStandIn({ appId, installationId }) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const stand = await startGitHubStandIn({ app: { appId, installationId, publicKey: createPublicKey(publicKey) } });
  return { stand, privateKey };
}

export async function startGitHubStandIn({ token = null, app = null } = {}) {
  const stand = {
    commits: new Set(), // the repository's known commits; others get GitHub's 422
    statuses: [], // accepted: {owner, repo, sha, state, context, description, at}
    statusRequests: [], // every request to the status endpoint: {at, sha, body, status}
    exchanges: [], // installation-token exchanges that succeeded: {at}
    violations: [], // requests GitHub would refuse, with the reason
    answers: [], // programmed answers for the next valid status requests
    tokens: new Set(token ? [token] : []),
    deployments: [], // created: {id, owner, repo, sha, environment, payload, description, production, transient, statuses: [{state, description, environment_url, log_url, at}]}
    deploymentRequests: [], // every request to the deployment endpoints: {at, method, path, body, status}
    // programmed answers for the next valid deployment requests: {status, body, headers, applied}; applied:
    // GitHub did what was asked and the answer was lost (a 5xx from a proxy, say)
    deploymentAnswers: [],
  };

  const send = (res, status, body, headers = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'X-GitHub-Api-Version-Selected': '2022-11-28', ...headers });
    res.end(text);
  };
  const refuse = (res, status, message, violation = message) => {
    stand.violations.push(violation);
    send(res, status, { message, documentation_url: 'https://docs.github.com/rest' });
  };

  // Headers every REST call needs, as GitHub checks them.
  function checkCommonHeaders(req, res) {
    if (!req.headers['user-agent']) {
      refuse(res, 403, 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header');
      return false;
    }
    const version = req.headers['x-github-api-version'];
    if (!version) {
      refuse(res, 400, 'X-GitHub-Api-Version header is required by this stand-in', 'missing X-GitHub-Api-Version');
      return false;
    }
    if (!SUPPORTED_API_VERSIONS.has(version)) {
      refuse(res, 400, `API version ${version} is not supported.`);
      return false;
    }
    const accept = (req.headers.accept || '').split(',').map((s) => s.trim().split(';')[0]);
    if (!accept.includes('application/vnd.github+json')) {
      refuse(res, 415, 'Accept must include application/vnd.github+json', `Accept was '${req.headers.accept}'`);
      return false;
    }
    return true;
  }

  function bearer(req) {
    const match = /^(?:Bearer|token) (\S+)$/.exec(req.headers.authorization || '');
    return match ? match[1] : null;
  }

  // The App JWT as GitHub verifies it: RS256 over the App's public key, iss = App ID, and an
  // expiry at most ten minutes ahead.
  function checkJwt(jwt) {
    const parts = (jwt || '').split('.');
    if (parts.length !== 3) return 'not a JWT';
    let header;
    let claims;
    try {
      header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    } catch {
      return 'JWT header or claims are not JSON';
    }
    if (parts.some((part) => /[=+/]/.test(part))) return 'JWT is not base64url without padding';
    if (header.alg !== 'RS256' || header.typ !== 'JWT') return `unexpected JWT header ${JSON.stringify(header)}`;
    const signed = verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), app.publicKey, Buffer.from(parts[2], 'base64url'));
    if (!signed) return 'JWT signature does not verify with the App public key';
    const now = Math.floor(Date.now() / 1000);
    if (String(claims.iss) !== String(app.appId)) return `JWT iss ${claims.iss} is not App ${app.appId}`;
    if (!Number.isInteger(claims.iat) || claims.iat > now + 5) return "'Issued at' claim ('iat') must be an Integer representing a time in the past";
    if (!Number.isInteger(claims.exp) || claims.exp <= now) return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
    if (claims.exp > now + 600) return "'Expiration time' claim ('exp') is too far in the future";
    return null;
  }

  function handleTokenExchange(req, res, match, body) {
    const problems = validatePath(createToken, match);
    if (problems.length) return refuse(res, 422, `Invalid request: ${problems.join('; ')}`);
    if (body.length) {
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        return refuse(res, 400, 'Problems parsing JSON');
      }
      const bodyProblems = validate(createToken.body.content['application/json'].schema, json);
      if (bodyProblems.length) return refuse(res, 422, `Invalid request: ${bodyProblems.join('; ')}`);
    }
    const jwtProblem = checkJwt(bearer(req));
    if (jwtProblem) return refuse(res, 401, jwtProblem);
    if (Number(match[1]) !== app.installationId) return refuse(res, 404, 'Not Found', `unknown installation ${match[1]}`);
    const issued = `ghs_${randomBytes(18).toString('base64url')}`;
    stand.tokens.add(issued);
    stand.exchanges.push({ at: Date.now() });
    const answer = {
      token: issued,
      expires_at: new Date(Date.now() + 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      permissions: { statuses: 'write', metadata: 'read' },
      repository_selection: 'selected',
    };
    assert.deepEqual(validate(responseSchema(createToken, '201'), answer), []);
    return send(res, 201, answer);
  }

  async function handleStatus(req, res, match, body) {
    const [owner, repo, sha] = createStatus.names.map((_, index) => decodeURIComponent(match[index + 1]));
    const record = { at: Date.now(), owner, repo, sha, body, status: 0 };
    stand.statusRequests.push(record);
    const answer = (status, json, headers) => {
      record.status = status;
      send(res, status, json, headers);
    };
    const token = bearer(req);
    if (!token) return answer(401, { message: 'Requires authentication' });
    if (!stand.tokens.has(token)) return answer(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    if (!/^application\/json\b/.test(req.headers['content-type'] || '')) {
      stand.violations.push(`Content-Type was '${req.headers['content-type']}'`);
      return answer(415, { message: 'Unsupported Media Type' });
    }
    let json;
    try {
      json = JSON.parse(body);
    } catch {
      stand.violations.push('body is not JSON');
      return answer(400, { message: 'Problems parsing JSON' });
    }
    const problems = [...validatePath(createStatus, match), ...validate(createStatus.body.content['application/json'].schema, json)];
    if (typeof json.description === 'string' && [...json.description].length > MAX_DESCRIPTION) {
      problems.push('description is too long (maximum is 140 characters)');
    }
    if (problems.length) {
      stand.violations.push(`invalid status: ${problems.join('; ')}`);
      return answer(422, { message: 'Validation Failed', errors: problems.map((message) => ({ resource: 'Status', message })) });
    }
    if (!stand.commits.has(sha)) {
      stand.violations.push(`no commit ${sha}`);
      return answer(422, { message: `No commit found for SHA: ${sha}` });
    }
    const programmed = stand.answers.shift();
    if (programmed) {
      if (programmed.delayMs) await delay(programmed.delayMs);
      const headers = typeof programmed.headers === 'function' ? programmed.headers() : programmed.headers;
      if (programmed.status >= 300) return answer(programmed.status, programmed.body, headers);
    }
    const status = { owner, repo, sha, state: json.state, context: json.context ?? 'default', description: json.description ?? null, at: Date.now() };
    stand.statuses.push(status);
    const created = {
      ...openapi.components.examples.status.value,
      id: stand.statuses.length,
      url: `${stand.url}/api/v3/repos/${owner}/${repo}/statuses/${sha}`,
      state: status.state,
      context: status.context,
      description: status.description,
      target_url: json.target_url ?? null,
    };
    assert.deepEqual(validate(responseSchema(createStatus, '201'), created), []);
    return answer(201, created, { Location: created.url });
  }

  // ---- Deployments: created per ref and environment, with statuses, as GitHub keeps them.

  function deploymentJson(deployment) {
    const base = `${stand.url}/api/v3/repos/${deployment.owner}/${deployment.repo}`;
    const json = {
      ...openapi.components.examples.deployment.value,
      url: `${base}/deployments/${deployment.id}`,
      id: deployment.id,
      sha: deployment.sha,
      ref: deployment.ref,
      payload: deployment.payload,
      original_environment: deployment.environment,
      environment: deployment.environment,
      description: deployment.description,
      statuses_url: `${base}/deployments/${deployment.id}/statuses`,
      repository_url: base,
      transient_environment: deployment.transient,
      production_environment: deployment.production,
    };
    assert.deepEqual(validate(openapi.components.schemas.deployment, json), []);
    return json;
  }

  // Parses and validates a deployment request; answers the refusal itself and returns null.
  function deploymentRequest(req, res, op, match, body, record, answer) {
    const token = bearer(req);
    if (!token) return answer(401, { message: 'Requires authentication' });
    if (!stand.tokens.has(token)) return answer(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    const url = new URL(req.url, 'http://stand-in');
    const problems = [...validatePath(op, match), ...validateQuery(op, url.searchParams)];
    let json = null;
    if (op.body) {
      if (!/^application\/json\b/.test(req.headers['content-type'] || '')) {
        stand.violations.push(`Content-Type was '${req.headers['content-type']}'`);
        return answer(415, { message: 'Unsupported Media Type' });
      }
      try {
        json = JSON.parse(body);
      } catch {
        stand.violations.push('body is not JSON');
        return answer(400, { message: 'Problems parsing JSON' });
      }
      problems.push(...validate(op.body.content['application/json'].schema, json));
    } else if (body.length) {
      problems.push(`${req.method} with a body`);
    }
    if (typeof json?.description === 'string' && op === createDeploymentStatus && [...json.description].length > MAX_DESCRIPTION) {
      problems.push('description is too long (maximum is 140 characters)');
    }
    if (problems.length) {
      stand.violations.push(`invalid ${op.id}: ${problems.join('; ')}`);
      return answer(422, { message: 'Validation Failed', errors: problems.map((message) => ({ resource: 'Deployment', message })) });
    }
    return { url, json };
  }

  async function handleDeployments(req, res, op, match, body) {
    const [owner, repo, id] = op.names.map((_, index) => decodeURIComponent(match[index + 1]));
    const record = { at: Date.now(), method: req.method, path: op === createDeploymentStatus ? 'statuses' : 'deployments', body, status: 0 };
    stand.deploymentRequests.push(record);
    const answer = (status, json, headers) => {
      record.status = status;
      send(res, status, json, headers);
    };
    const parsed = deploymentRequest(req, res, op, match, body, record, answer);
    if (!parsed) return undefined;
    const { url, json } = parsed;

    if (op === listDeployments) {
      const sha = url.searchParams.get('sha');
      const environment = url.searchParams.get('environment');
      const found = stand.deployments
        .filter((d) => d.owner === owner && d.repo === repo && (!sha || d.sha === sha) && (!environment || d.environment === environment))
        .reverse() // newest first
        .slice(0, Number(url.searchParams.get('per_page') || 30))
        .map(deploymentJson);
      return answer(200, found);
    }

    const programmed = stand.deploymentAnswers.shift();
    const programmedAnswer = () => answer(programmed.status, programmed.body, typeof programmed.headers === 'function' ? programmed.headers() : programmed.headers);
    if (programmed && !programmed.applied) return programmedAnswer();
    // What GitHub answers, or the programmed answer in its place once GitHub did the work.
    const finish = (status, json) => (programmed ? programmedAnswer() : answer(status, json));

    if (op === createDeployment) {
      if (!stand.commits.has(json.ref)) {
        stand.violations.push(`no ref ${json.ref}`);
        return answer(422, { message: `No ref found for: ${json.ref}` });
      }
      // GitHub merges the default branch into a ref that is behind it unless auto_merge is false;
      // the stand-in's refs are always behind.
      if (json.auto_merge !== false) {
        stand.violations.push('auto_merge was not false');
        return answer(202, { message: `Auto-merged main into ${json.ref} on deployment.` });
      }
      // Without required_contexts GitHub wants every commit status of the ref to be a success.
      if (!Array.isArray(json.required_contexts) || json.required_contexts.length) {
        stand.violations.push('required_contexts was not []');
        return answer(409, { message: `Conflict: Commit status checks failed for ${json.ref}.` });
      }
      const environment = json.environment ?? 'production';
      const deployment = {
        id: stand.deployments.length + 1,
        owner,
        repo,
        sha: json.ref,
        ref: json.ref,
        environment,
        payload: typeof json.payload === 'string' ? (json.payload ? JSON.parse(json.payload) : {}) : (json.payload ?? {}),
        description: json.description ?? '',
        transient: json.transient_environment ?? false,
        production: json.production_environment ?? environment === 'production',
        statuses: [],
      };
      stand.deployments.push(deployment);
      return finish(201, deploymentJson(deployment));
    }

    const deployment = stand.deployments.find((d) => d.owner === owner && d.repo === repo && d.id === Number(id));
    if (!deployment) return answer(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    const status = { state: json.state, description: json.description ?? '', environment_url: json.environment_url ?? '', log_url: json.log_url ?? '', at: Date.now() };
    deployment.statuses.push(status);
    // auto_inactive (default true): a success makes the earlier non-transient, non-production
    // deployments of the environment whose latest status is a success inactive.
    if (json.state === 'success' && json.auto_inactive !== false) {
      for (const other of stand.deployments) {
        if (other === deployment || other.owner !== owner || other.repo !== repo || other.environment !== deployment.environment) continue;
        if (other.id > deployment.id || other.transient || other.production) continue;
        if (other.statuses.at(-1)?.state === 'success') other.statuses.push({ state: 'inactive', description: '', environment_url: '', log_url: '', at: Date.now() });
      }
    }
    const created = {
      ...openapi.components.examples['deployment-status'].value,
      id: deployment.statuses.length,
      state: json.state,
      description: status.description,
      environment: deployment.environment,
      deployment_url: `${stand.url}/api/v3/repos/${owner}/${repo}/deployments/${deployment.id}`,
    };
    return finish(201, created);
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url, 'http://stand-in');
      if (!url.pathname.startsWith('/api/v3/')) return refuse(res, 404, 'Not Found', `${req.method} ${url.pathname} is outside /api/v3`);
      const apiPath = url.pathname.slice('/api/v3'.length);
      if (!checkCommonHeaders(req, res)) return undefined;
      let match = createStatus.regex.exec(apiPath);
      if (match && req.method === 'POST') return handleStatus(req, res, match, body);
      for (const [op, method] of [
        [listDeployments, 'GET'],
        [createDeployment, 'POST'],
        [createDeploymentStatus, 'POST'],
      ]) {
        match = op.regex.exec(apiPath);
        if (match && req.method === method) return handleDeployments(req, res, op, match, body);
      }
      match = createToken.regex.exec(apiPath);
      if (match && req.method === 'POST' && app) return handleTokenExchange(req, res, match, body);
      return refuse(res, 404, 'Not Found', `${req.method} ${apiPath} is not an endpoint fluxrelay should call`);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  stand.url = `http://127.0.0.1:${server.address().port}`;
  stand.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    });
  stand.newCommit = () => {
    const sha = randomBytes(20).toString('hex');
    stand.commits.add(sha);
    return sha;
  };
  stand.statusesFor = (sha) => stand.statuses.filter((s) => s.sha === sha);
  stand.requestsFor = (sha) => stand.statusRequests.filter((r) => r.sha === sha);
  stand.deploymentsFor = (sha) => stand.deployments.filter((d) => d.sha === sha);
  return stand;
}
