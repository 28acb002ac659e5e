// A GitHub REST API stand-in that checks requests the way GitHub does: GitHub's own OpenAPI
// description (@octokit/openapi) for paths and bodies, the headers GitHub asks for, credentials,
// and the App JWT signature. Shared by the tests whose relay talks to GitHub.
import assert from 'node:assert/strict';
import { randomBytes, verify } from 'node:crypto';
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
assert.equal(createStatus.id, 'repos/create-commit-status');
assert.equal(createToken.id, 'apps/create-installation-access-token');

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

export async function startGitHubStandIn({ token = null, app = null } = {}) {
  const stand = {
    commits: new Set(), // the repository's known commits; others get GitHub's 422
    statuses: [], // accepted: {owner, repo, sha, state, context, description, at}
    statusRequests: [], // every request to the status endpoint: {at, sha, body, status}
    exchanges: [], // installation-token exchanges that succeeded: {at}
    violations: [], // requests GitHub would refuse, with the reason
    answers: [], // programmed answers for the next valid status requests
    tokens: new Set(token ? [token] : []),
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
  return stand;
}
