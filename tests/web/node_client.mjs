// A Node client for the tests: he.js (the page's own module) against a live server.
// usage: node node_client.mjs SPEC.json — {url, model, images: [[...], ...]} → JSON on stdout:
// {logits, timings, upload_bytes, context_parts}
import fs from 'node:fs';
import { BfvKeys, CkksKeys, packCiphertexts, packContext, unpackCiphertexts } from '../../server/web/static/he.js';
import initialize from '../../server/web/node_modules/node-seal/dist/index_throws.js';

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const seal = await initialize();
const timings = {};
const timed = async (name, fn) => { const t0 = performance.now(); const r = await fn();
  timings[name] = (performance.now() - t0) / 1000; return r; };
async function call(path, init) {
  const response = await fetch(spec.url + path, init);
  if (!response.ok) throw new Error(`${path} → ${response.status}: ${await response.text()}`);
  return response;
}
const desc = await (await call(`/v1/models/${spec.model}`)).json();
const Keys = desc.scheme === 'bfv' ? BfvKeys : CkksKeys;
const keys = await timed('keygen_s', () => new Keys(seal, desc));
const parts = keys.publicParts();
const context = packContext(desc.scheme, parts, 'ab'.repeat(16));
const octets = { 'Content-Type': 'application/octet-stream' };
const { key_id } = await timed('register_s', async () =>
  (await call('/v1/keys', { method: 'POST', body: context, headers: octets })).json());
let upload = 0;
const post = async (segment, blobs) => {
  const body = packCiphertexts(blobs);
  upload += body.length;
  const path = `/v1/models/${spec.model}/infer?key_id=${key_id}` + (segment ? `&segment=${segment}` : '');
  return unpackCiphertexts(new Uint8Array(await (await call(path,
    { method: 'POST', body, headers: octets })).arrayBuffer()));
};
let logits;
if (desc.scheme === 'bfv') {
  logits = (await keys.infer(spec.images, post, timings)).map((row) => row.map(String));
} else {
  const blobs = await timed('encrypt_s', () => keys.encryptBatch(spec.images));
  const answer = await timed('server_s', () => post(0, blobs));
  logits = keys.decryptBatch(answer, spec.images.length).map((row) => Array.from(row));
}
console.log(JSON.stringify({ logits, timings, key_id, upload_bytes: upload,
  context_parts: parts.map(([n, d]) => [n, d.length]) }));
