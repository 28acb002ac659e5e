// Honest fakes for the two peers that cannot run here: Flux's webhook Receiver and the Kubernetes
// API server. Each checks requests the way the real one does and answers as it does, so a test
// passing against them says something about the real thing.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

// notification-controller's body limit for receivers.
const MAX_BODY_BYTES = 3 * 1024 * 1024;

function readBody(req, limit = MAX_BODY_BYTES) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > limit ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

function close(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Kept-alive connections would hold the port: a stopped peer refuses connections at once.
    server.closeAllConnections();
  });
}

// Go's mime.ParseMediaType, as far as a content type's name goes.
function mediaType(value) {
  return (value || '').split(';')[0].trim().toLowerCase();
}

// go-github's ValidateSignature: "<alg>=<hex>" with sha1, sha256 or sha512, HMAC over the raw body.
function validGitHubSignature(signature, body, token) {
  const match = /^(sha1|sha256|sha512)=([0-9a-fA-F]*)$/.exec(signature || '');
  if (!match) return false;
  const expected = createHmac(match[1], token).update(body).digest();
  const given = Buffer.from(match[2], 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

// The path notification-controller gives a Receiver: /hook/ + sha256(token + name + namespace).
export function receiverWebhookPath(token, name, namespace) {
  return `/hook/${createHash('sha256').update(token + name + namespace).digest('hex')}`;
}

// A `type: github` Receiver behind notification-controller's receiver server:
// - 404 for any path but the Receiver's webhook path;
// - 503 while the Receiver is not ready (or suspended);
// - 413 for bodies over 3 MiB;
// - 400 when go-github's ValidatePayload fails (content type other than JSON or form, missing or
//   wrong signature: Flux answers 400 here, not 401) or when X-GitHub-Event is not in `events`
//   (compared case-insensitively);
// - 200 after "annotating" its resources, counted as one reconcile.
// Returns {url, port, path, reconciles, answers, setReady(bool), stop(), start()}.
export async function startFluxReceiver({ token, name = 'github-webhook', namespace = 'flux-system', events = ['ping', 'push'] }) {
  const receiver = {
    path: receiverWebhookPath(token, name, namespace),
    port: 0,
    url: '',
    ready: true,
    // One entry per reconcile: {deliveryId, event, body (string), headers, at (ms)}.
    reconciles: [],
    // Every request and the status it got: {path, status, deliveryId, at}.
    answers: [],
    server: null,
  };

  async function handle(req, res) {
    const answer = (status, text = '') => {
      receiver.answers.push({ path: req.url, status, deliveryId: req.headers['x-github-delivery'], at: Date.now() });
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(text);
    };
    const body = await readBody(req);
    if (body === null) return answer(413, 'request body too large');
    // The Receiver is looked up by the full request URI.
    if (req.url !== receiver.path) return answer(404);
    if (!receiver.ready) return answer(503);

    let payload;
    const type = mediaType(req.headers['content-type']);
    if (type === 'application/json') {
      payload = body;
    } else if (type === 'application/x-www-form-urlencoded') {
      payload = Buffer.from(new URLSearchParams(body.toString('utf8')).get('payload') || '');
    } else {
      return answer(400);
    }
    const signature = req.headers['x-hub-signature-256'] || req.headers['x-hub-signature'];
    if (!validGitHubSignature(signature, body, token)) return answer(400);
    const event = req.headers['x-github-event'] || '';
    if (events.length > 0 && !events.some((allowed) => allowed.toLowerCase() === event.toLowerCase())) {
      return answer(400);
    }
    receiver.reconciles.push({
      deliveryId: req.headers['x-github-delivery'],
      event,
      body: payload.toString('utf8'),
      headers: { ...req.headers },
      at: Date.now(),
    });
    return answer(200);
  }

  receiver.start = async () => {
    receiver.server = http.createServer((req, res) => {
      handle(req, res).catch((error) => {
        res.writeHead(500);
        res.end(String(error));
      });
    });
    receiver.port = await listen(receiver.server, receiver.port);
    receiver.url = `http://127.0.0.1:${receiver.port}`;
  };
  receiver.stop = async () => {
    if (receiver.server) await close(receiver.server);
    receiver.server = null;
  };
  receiver.setReady = (ready) => {
    receiver.ready = ready;
  };
  // Reconciles triggered by these delivery ids.
  receiver.reconcilesFor = (ids) => receiver.reconciles.filter((r) => ids.includes(r.deliveryId));

  await receiver.start();
  return receiver;
}

// Go's RFC3339Nano in UTC: seconds, then an optional fraction without trailing zeros.
export const RFC3339_NANO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$/;

function apiStatus(code, reason, message) {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
}

// RFC 7386 JSON merge patch.
function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

// Namespaced object URL paths, as the API server routes them: core group under /api/v1, named
// groups under /apis/{group}/{version}.
function objectPath({ apiVersion, plural, namespace, name }) {
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  return `${base}/namespaces/${namespace}/${plural}/${name}`;
}

// A Kubernetes API server holding a few objects, taking PATCH as the real one does for them:
// - 401 unless `Authorization: Bearer <token>` with the current token (setToken rotates it);
// - 404 for an object it does not hold, 405 for methods other than GET and PATCH;
// - 415 for patch types other than merge and JSON patch (custom resources take no strategic merge);
// - 400 for a body that is not JSON, and 422 when the patch leaves reconcile.fluxcd.io/requestedAt
//   anything but an RFC3339Nano time (Flux's controllers would not parse it);
// - 200 with the patched object otherwise.
// `objects`: [{apiVersion, kind, plural, namespace, name}]. Returns {url, patches, answers,
// object(path), setToken(token), stop()}.
export async function startKubernetesApi({ token, objects }) {
  const api = { token, patches: [], answers: [], store: new Map(), server: null };
  for (const o of objects) {
    api.store.set(objectPath(o), {
      apiVersion: o.apiVersion,
      kind: o.kind,
      metadata: { name: o.name, namespace: o.namespace, resourceVersion: '1', annotations: {} },
    });
  }

  async function handle(req, res) {
    const answer = (status, text, type = 'application/json') => {
      api.answers.push({ method: req.method, path: req.url, status, at: Date.now() });
      res.writeHead(status, { 'Content-Type': type });
      res.end(text);
    };
    const body = await readBody(req);
    if (req.headers.authorization !== `Bearer ${api.token}`) return answer(401, apiStatus(401, 'Unauthorized', 'Unauthorized'));
    const path = req.url.split('?')[0];
    const current = api.store.get(path);
    if (!current) return answer(404, apiStatus(404, 'NotFound', `the server could not find the requested resource (${path})`));
    if (req.method === 'GET') return answer(200, JSON.stringify(current));
    if (req.method !== 'PATCH') return answer(405, apiStatus(405, 'MethodNotAllowed', `${req.method} is not allowed`));
    const type = mediaType(req.headers['content-type']);
    if (type !== 'application/merge-patch+json' && type !== 'application/json-patch+json') {
      return answer(415, apiStatus(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`));
    }
    let patch;
    try {
      patch = JSON.parse(body.toString('utf8'));
    } catch (error) {
      return answer(400, apiStatus(400, 'BadRequest', `error decoding patch: ${error.message}`));
    }
    if (type !== 'application/merge-patch+json') return answer(422, apiStatus(422, 'Invalid', 'only merge patches are modelled'));
    const patched = mergePatch(current, patch);
    const requestedAt = patched.metadata?.annotations?.['reconcile.fluxcd.io/requestedAt'];
    if (requestedAt !== undefined && (typeof requestedAt !== 'string' || !RFC3339_NANO_UTC.test(requestedAt))) {
      return answer(422, apiStatus(422, 'Invalid', `reconcile.fluxcd.io/requestedAt: ${JSON.stringify(requestedAt)} is not RFC3339Nano`));
    }
    patched.metadata.resourceVersion = String(Number(current.metadata.resourceVersion) + 1);
    api.store.set(path, patched);
    api.patches.push({ path, contentType: req.headers['content-type'], body: body.toString('utf8'), requestedAt, at: Date.now() });
    return answer(200, JSON.stringify(patched));
  }

  api.server = http.createServer((req, res) => {
    handle(req, res).catch((error) => {
      res.writeHead(500);
      res.end(String(error));
    });
  });
  const port = await listen(api.server, 0);
  api.url = `http://127.0.0.1:${port}`;
  api.object = (path) => api.store.get(path);
  api.setToken = (next) => {
    api.token = next;
  };
  api.stop = () => close(api.server);
  return api;
}
