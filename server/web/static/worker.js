// The page's Web Worker: SEAL (node-seal, WebAssembly) runs here, so the page stays
// responsive. Messages in: {cmd: 'infer', origin, token, desc, images, id}. Out:
// {type: 'progress', step, detail}, {type: 'result', ...}, {type: 'error', message}.
import initialize from '/vendor/node-seal/index_throws.js';
import { BfvKeys, CkksKeys, packCiphertexts, packContext, unpackCiphertexts } from './he.js';
import * as keystore from './keystore.js';

let seal = null;
const sessions = new Map(); // keystore name → {keys, keyId, client}

const post = (message) => self.postMessage(message);
const progress = (step, detail = '') => post({ type: 'progress', step, detail });
const now = () => performance.now() / 1000;

class ServerError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(origin, token, path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(origin + path, { ...init, headers });
  } catch (err) {
    throw new ServerError(0, `cannot reach the server at ${origin} (${err.message}): is it running?`);
  }
  if (!response.ok) {
    let detail = await response.text();
    try { detail = JSON.parse(detail).detail || detail; } catch { /* not JSON */ }
    throw new ServerError(response.status, `${path.split('?')[0]} → ${response.status}: ${detail}`);
  }
  return response;
}

function randomHex(bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, '0')).join('');
}

const OCTETS = { 'Content-Type': 'application/octet-stream' };

async function register(req, session, timings, sizes) {
  progress('register', 'sending the public context (parameters and evaluation keys, no secret key)');
  const t0 = now();
  const parts = session.keys.publicParts();
  const body = packContext(req.desc.scheme, parts, session.client);
  const answer = await (await call(req.origin, req.token, '/v1/keys',
    { method: 'POST', body, headers: OCTETS })).json();
  timings.register_s = now() - t0;
  sizes.up += body.length;
  sizes.parts = parts.map(([name, data]) => [name, data.length]);
  session.keyId = answer.key_id;
  if (!answer.models.includes(req.desc.name)) {
    throw new Error(`the server refused these keys for ${req.desc.name}: ` +
      JSON.stringify(answer.refused));
  }
}

async function session(req, timings, sizes) {
  const name = keystore.keyName(req.origin, req.desc);
  if (sessions.has(name)) return { name, session: sessions.get(name), kept: true };
  if (req.desc.scheme === 'bfv') {  // one secret key per plaintext prime: kept for this page only
    progress('keygen', `generating keys for ${req.desc.name} (${req.desc.keys.length} plaintext prime(s))`);
    const t0 = now();
    const s = { keys: new BfvKeys(seal, req.desc), keyId: null, client: randomHex(16) };
    timings.keygen_s = now() - t0;
    await register(req, s, timings, sizes);
    sessions.set(name, s);
    return { name, session: s, kept: false };
  }
  let kept = null;
  try { kept = await keystore.load(name); } catch { kept = null; }
  if (kept) {
    progress('keys', 'using the keys this browser kept for this model (no keygen)');
    const t0 = now();
    const s = { keys: CkksKeys.restore(seal, req.desc, kept.secret), keyId: kept.keyId,
                client: kept.client };
    kept.secret.fill(0);
    timings.restore_s = now() - t0;
    sessions.set(name, s);
    return { name, session: s, kept: true };
  }
  progress('keygen', `generating keys for ${req.desc.name} (N = ${req.desc.params.poly_modulus_degree})`);
  const t0 = now();
  const s = { keys: new CkksKeys(seal, req.desc), keyId: null, client: randomHex(16) };
  timings.keygen_s = now() - t0;
  await register(req, s, timings, sizes);
  sessions.set(name, s);
  await keystore.save(name, { keyId: s.keyId, client: s.client,
                              secret: s.keys.secretBytesForKeystore() });
  return { name, session: s, kept: false };
}

async function send(req, s, blobs, timings, sizes, name, segment = 0) {
  const body = packCiphertexts(blobs);
  const path = () => `/v1/models/${encodeURIComponent(req.desc.name)}/infer?key_id=${s.keyId}` +
    (segment ? `&segment=${segment}` : '');
  const t0 = now();
  let response;
  try {
    response = await call(req.origin, req.token, path(), { method: 'POST', body, headers: OCTETS });
  } catch (err) {
    if (err.status !== 404 || !String(err.message).includes('unknown key_id')) throw err;
    progress('register', 'the server no longer holds this browser\'s keys (evicted): registering again');
    await register(req, s, timings, sizes);
    if (req.desc.scheme === 'ckks') await keystore.updateKeyId(name, s.keyId);
    response = await call(req.origin, req.token, path(), { method: 'POST', body, headers: OCTETS });
  }
  const answer = new Uint8Array(await response.arrayBuffer());
  timings.server_s = (timings.server_s || 0) + now() - t0;
  sizes.up += body.length;
  sizes.down += answer.length;
  return unpackCiphertexts(answer);
}

async function infer(req) {
  const timings = {};
  const sizes = { up: 0, down: 0, parts: null };
  if (!seal) {
    progress('load', 'loading Microsoft SEAL 4.1 (WebAssembly)');
    const t0 = now();
    seal = await initialize();
    timings.load_s = now() - t0;
  }
  const { name, session: s, kept } = await session(req, timings, sizes);
  const packing = req.desc.packing;
  let logits = [];
  timings.encrypt_s = 0; timings.decrypt_s = 0;
  if (req.desc.scheme === 'bfv') {
    const segments = req.desc.segments;
    progress('encrypt', `encrypting ${req.images.length} image(s) as integers` +
      (segments > 1 ? `; ${segments} round trips (the client applies the tables between them)` : ''));
    const values = await s.keys.infer(req.images, async (k, blobs) => {
      progress('server', `segment ${k + 1} of ${segments}: the server evaluates the ciphertexts`);
      return send(req, s, blobs, timings, sizes, name, k);
    }, timings);
    progress('decrypt', 'decrypted: exact integer logits');
    const integers = values.map((row) => row.map(String));
    post({ type: 'result', id: req.id, logits: integers.map((r) => r.map(Number)), integers,
           exact: true, outputScale: req.desc.output.output_scale, timings, sizes,
           keysKept: kept, keyId: s.keyId });
    return;
  }
  if (packing === 'single') {
    for (let i = 0; i < req.images.length; i++) {
      progress('encrypt', `encrypting image ${i + 1} of ${req.images.length}`);
      let t0 = now();
      const blobs = s.keys.encryptSingle(req.images[i]);
      timings.encrypt_s += now() - t0;
      progress('server', 'the server evaluates the encrypted image');
      const outs = await send(req, s, blobs, timings, sizes, name);
      progress('decrypt', 'decrypting the result');
      t0 = now();
      logits.push(Array.from(s.keys.decryptSingle(outs)));
      timings.decrypt_s += now() - t0;
    }
  } else {
    progress('encrypt', `encrypting ${req.images.length} image(s), one ciphertext per pixel`);
    let t0 = now();
    const blobs = s.keys.encryptBatch(req.images, (done, total) => {
      if (done % 64 === 0 || done === total) progress('encrypt', `ciphertext ${done} of ${total}`);
    });
    timings.encrypt_s = now() - t0;
    progress('server', `the server evaluates ${req.images.length} encrypted image(s)`);
    const outs = await send(req, s, blobs, timings, sizes, name);
    progress('decrypt', 'decrypting the results');
    t0 = now();
    logits = s.keys.decryptBatch(outs, req.images.length).map((row) => Array.from(row));
    timings.decrypt_s = now() - t0;
  }
  post({ type: 'result', id: req.id, logits, timings, sizes, keysKept: kept, keyId: s.keyId });
}

self.onmessage = async (event) => {
  const req = event.data;
  try {
    if (req.cmd === 'infer') await infer(req);
    else if (req.cmd === 'forget') {
      sessions.clear();
      await keystore.forget(keystore.keyName(req.origin, req.desc));
      post({ type: 'forgotten', id: req.id });
    }
  } catch (err) {
    post({ type: 'error', id: req.id, message: err.message || String(err) });
  }
};
