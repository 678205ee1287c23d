// The browser client's homomorphic side, shared by the page's Web Worker and the Node
// tests: keys, the public context, encryption and decryption for a served plan, written
// from the plan's published description alone (the contract) — the same framing, parts
// and seeded ciphertexts as the Python client (crypto_nn/wire/, crypto_nn/ckks/client.py).
// ``seal`` is node-seal's initialised module (SEAL 4.1.2): every object it writes carries
// version 4.1, which the context header declares ("seal": "4.1") so that the server
// rewrites the version headers; everything is saved uncompressed.

export const SEAL_VERSION = '4.1';
const utf8 = new TextEncoder();
const CONTEXT_MAGIC = utf8.encode('CRCTX\n');
const LIST_MAGIC = utf8.encode('CRCTS\n');

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

function framed(magic, header, blobs) {
  return concat([magic, utf8.encode(JSON.stringify(header) + '\n'), ...blobs]);
}

/** crypto_nn.wire.context: the public evaluation context (parts: [[name, bytes]]). */
export function packContext(scheme, parts, client) {
  const header = { format: 'cryptorobust.context', version: 1, scheme, seal: SEAL_VERSION };
  if (client) header.client = client;
  header.parts = parts.map(([name, data]) => [name, data.length]);
  return framed(CONTEXT_MAGIC, header, parts.map(([, data]) => data));
}

/** crypto_nn.wire.framing: a list of ciphertexts as one body. */
export function packCiphertexts(blobs) {
  const header = { format: 'cryptorobust.ciphertexts', version: 1, meta: {},
                   sizes: blobs.map((b) => b.length) };
  return framed(LIST_MAGIC, header, blobs);
}

export function unpackCiphertexts(body) {
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(body);
  for (let i = 0; i < LIST_MAGIC.length; i++) {
    if (bytes[i] !== LIST_MAGIC[i]) throw new Error('the server did not answer with ciphertexts');
  }
  const end = bytes.indexOf(10, LIST_MAGIC.length);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(LIST_MAGIC.length, end)));
  let at = end + 1;
  return header.sizes.map((size) => { const b = bytes.slice(at, at + size); at += size; return b; });
}

/** Keys for one CKKS plan; the secret key stays inside (never saved by this module). */
export class CkksKeys {
  constructor(seal, desc) {
    this.init(seal, desc, null);
  }

  init(seal, desc, secretBytes) {
    if (desc.scheme !== 'ckks') throw new Error(`plan ${desc.name} is ${desc.scheme}, not CKKS`);
    this.seal = seal;
    this.desc = desc;
    const p = desc.params;
    this.scale = 2 ** p.scale_bits;
    this.parms = new seal.EncryptionParameters(seal.SchemeType.ckks);
    this.parms.setPolyModulusDegree(p.poly_modulus_degree);
    this.parms.setCoeffModulus(
      seal.CoeffModulus.Create(p.poly_modulus_degree, Int32Array.from(p.coeff_mod_bit_sizes)));
    this.context = new seal.SEALContext(this.parms, true, seal.SecLevelType.tc128);
    if (!this.context.parametersSet()) throw new Error(`SEAL refuses plan ${desc.name}'s parameters`);
    if (secretBytes) {
      const kept = new seal.SecretKey();
      kept.loadFromArray(this.context, secretBytes);
      this.keygen = new seal.KeyGenerator(this.context, kept);
    } else {
      this.keygen = new seal.KeyGenerator(this.context);
    }
    const secret = this.keygen.secretKey();
    this.encoder = new seal.CKKSEncoder(this.context);
    this.encryptor = new seal.Encryptor(this.context, this.keygen.createPublicKey(), secret);
    this.decryptor = new seal.Decryptor(this.context, secret);
    this.none = seal.ComprModeType.none;
  }

  get slots() { return this.encoder.slotCount(); }

  /** SEAL's bytes of the secret key — only for the browser's own encrypted key store
   *  (keystore.js wraps them with a non-extractable AES key); never part of an upload. */
  secretBytesForKeystore() { return this.keygen.secretKey().saveToArray(this.none); }

  /** [[name, bytes]]: parameters, and the keys the plan's description asks for. */
  publicParts() {
    const parts = [['params', this.parms.saveToArray(this.none)]];
    if (this.desc.relin_keys || (this.desc.rotations || []).length) {
      parts.push(['relin_keys', this.keygen.createRelinKeysSerializable().saveToArray(this.none)]);
    }
    if ((this.desc.rotations || []).length) {
      const steps = Int32Array.from(this.desc.rotations);
      parts.push(['galois_keys',
        this.keygen.createGaloisKeysSerializableWithSteps(steps).saveToArray(this.none)]);
    }
    return parts;
  }

  /** Keys restored from a secret key this browser kept (``secretBytes``: SEAL's bytes). */
  static restore(seal, desc, secretBytes) {
    const keys = Object.create(CkksKeys.prototype);
    keys.init(seal, desc, secretBytes);
    return keys;
  }

  encryptValues(values) {
    const pt = new this.seal.Plaintext();
    this.encoder.encode(Float64Array.from(values), this.scale, pt);
    const blob = this.encryptor.encryptSymmetricSerializable(pt).saveToArray(this.none);
    pt.delete();
    return blob;
  }

  decryptValues(blob) {
    const ct = new this.seal.Ciphertext();
    ct.loadFromArray(this.context, blob);
    const pt = new this.seal.Plaintext();
    this.decryptor.decrypt(ct, pt);
    const values = this.encoder.decodeFloat64(pt);
    ct.delete(); pt.delete();
    return values;
  }

  /** Single packing: one image → one ciphertext per slot layout (the plan's client-side
   *  im2col: slot s of ciphertext c holds input value layouts[c][s], −1 meaning 0). */
  encryptSingle(image) {
    const layouts = this.desc.input.layouts;
    if (!layouts) throw new Error(`plan ${this.desc.name} packs batches; use encryptBatch`);
    return layouts.map((layout) => this.encryptValues(layout.map((i) => (i < 0 ? 0 : image[i]))));
  }

  /** The single plan's one output ciphertext → its logits. */
  decryptSingle(blobs) {
    if (blobs.length !== 1) throw new Error(`${blobs.length} outputs; a single plan returns 1`);
    return this.decryptValues(blobs[0]).slice(0, this.desc.output.logits);
  }

  /** Batch packing: images (n arrays of the plan's inputs, pixels in [0, 1]) → one
   *  ciphertext per input value, slot i holding image i. */
  encryptBatch(images, onProgress) {
    const inputs = this.desc.input.shape.reduce((a, b) => a * b, 1);
    const n = images.length;
    if (n < 1 || n > this.slots) throw new Error(`${n} images: a batch holds 1 to ${this.slots}`);
    const blobs = [];
    const column = new Float64Array(n);
    for (let j = 0; j < inputs; j++) {
      for (let i = 0; i < n; i++) column[i] = images[i][j];
      blobs.push(this.encryptValues(column));
      if (onProgress) onProgress(j + 1, inputs);
    }
    return blobs;
  }

  /** Output ciphertexts → n rows of logits (slot i of output j = logit j of image i). */
  decryptBatch(blobs, n) {
    const logits = Array.from({ length: n }, () => new Float64Array(blobs.length));
    blobs.forEach((blob, j) => {
      const values = this.decryptValues(blob);
      for (let i = 0; i < n; i++) logits[i][j] = values[i];
    });
    return logits;
  }
}

// --- BFV: exact integer plans -------------------------------------------------------------

/** Centered x with x ≡ r_i (mod t_i), |x| < Π t_i / 2 (crypto_nn.bfv.params.crt_combine). */
export function crtCombine(residues, moduli) {
  const big = moduli.reduce((a, t) => a * t, 1n);
  let total = 0n;
  moduli.forEach((t, i) => {
    const m = big / t;
    total += residues[i] * ((m * modInverse(m % t, t)) % big);
  });
  total %= big;
  return total > big / 2n ? total - big : total;
}

function modInverse(a, m) {
  let [r0, r1, s0, s1] = [a, m, 1n, 0n];
  while (r1 !== 0n) { const q = r0 / r1; [r0, r1] = [r1, r0 - q * r1]; [s0, s1] = [s1, s0 - q * s1]; }
  return ((s0 % m) + m) % m;
}

const product = (shape) => shape.reduce((a, b) => a * b, 1);

/** The IntModel ops a client-aided plan leaves to the client, on BigInt arrays of
 *  (n, ...shape) in NCHW order — integer_nn.ops' table, max/sum pool, flatten, square. */
export function clientOp(op, x, shape) {
  const p = op.params || {};
  if (op.kind === 'table') {
    const values = op.arrays.values.map(BigInt);
    const lo = BigInt(p.lo), shift = BigInt(p.shift);
    const hi = lo + (BigInt(values.length) << shift) - 1n;
    return { x: x.map((v) => values[Number(((v < lo ? lo : v > hi ? hi : v) - lo) >> shift)]), shape };
  }
  if (op.kind === 'flatten') return { x, shape: [product(shape)] };
  if (op.kind === 'square') return { x: x.map((v) => v * v), shape };
  if (op.kind === 'maxpool2d' || op.kind === 'sumpool2d') {
    const [c, h, w] = shape; const k = p.kernel, s = p.stride;
    const oh = Math.floor((h - k) / s) + 1, ow = Math.floor((w - k) / s) + 1;
    const n = x.length / product(shape);
    const out = new Array(n * c * oh * ow);
    let o = 0;
    for (let i = 0; i < n; i++) for (let ch = 0; ch < c; ch++) for (let y = 0; y < oh; y++) {
      for (let z = 0; z < ow; z++) {
        let acc = op.kind === 'maxpool2d' ? null : 0n;
        for (let dy = 0; dy < k; dy++) for (let dz = 0; dz < k; dz++) {
          const v = x[((i * c + ch) * h + y * s + dy) * w + z * s + dz];
          acc = op.kind === 'maxpool2d' ? (acc === null || v > acc ? v : acc) : acc + v;
        }
        out[o++] = acc;
      }
    }
    return { x: out, shape: [c, oh, ow] };
  }
  throw new Error(`client op ${op.kind} is not one the page runs (the Python client does)`);
}

/** Keys for one BFV batch plan (one key set per plaintext prime; a client-aided plan's
 *  segments each use a slice of them): integers in, exact integer logits out. */
export class BfvKeys {
  constructor(seal, desc) {
    if (desc.scheme !== 'bfv' || desc.packing !== 'batch') {
      throw new Error(`plan ${desc.name} is ${desc.scheme} ${desc.packing}; the page runs BFV batch plans`);
    }
    this.seal = seal;
    this.desc = desc;
    this.none = seal.ComprModeType.none;
    this.sets = desc.keys.map((spec) => {
      const suffix = spec.parts.find((p) => p.startsWith('params')).slice('params'.length);
      const parms = new seal.EncryptionParameters(seal.SchemeType.bfv);
      parms.setPolyModulusDegree(spec.poly_modulus_degree);
      parms.setCoeffModulus(seal.CoeffModulus.Create(spec.poly_modulus_degree,
        Int32Array.from(spec.coeff_mod_bit_sizes)));
      parms.setPlainModulus(new seal.Modulus(BigInt(spec.plain_modulus)));
      const context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
      if (!context.parametersSet()) throw new Error(`SEAL refuses plan ${desc.name}'s parameters`);
      const keygen = new seal.KeyGenerator(context);
      const secret = keygen.secretKey();
      return {
        suffix, parms, context, keygen, t: BigInt(spec.plain_modulus),
        relin: spec.parts.includes(`relin_keys${suffix}`), rotations: spec.rotations || [],
        encoder: new seal.BatchEncoder(context),
        encryptor: new seal.Encryptor(context, keygen.createPublicKey(), secret),
        decryptor: new seal.Decryptor(context, secret),
      };
    });
    this.segments = [];
    let first = 0;
    for (const seg of desc.segments_detail) {
      const primes = seg.params.plain_moduli.length;
      this.segments.push({ ...seg, sets: this.sets.slice(first, first + primes) });
      first += primes;
    }
  }

  get slots() { return this.desc.params.poly_modulus_degree; }

  publicParts() {
    const parts = [];
    for (const s of this.sets) {
      parts.push([`params${s.suffix}`, s.parms.saveToArray(this.none)]);
      if (s.relin) {
        parts.push([`relin_keys${s.suffix}`, s.keygen.createRelinKeysSerializable().saveToArray(this.none)]);
      }
      if (s.rotations.length) {
        parts.push([`galois_keys${s.suffix}`, s.keygen.createGaloisKeysSerializableWithSteps(
          Int32Array.from(s.rotations)).saveToArray(this.none)]);
      }
    }
    return parts;
  }

  /** Pixels in [0, 1] → the integers the plan was compiled for (round(x · pixel_max)). */
  quantize(images) {
    const max = this.desc.input.pixel_max;
    return images.map((img) => Array.from(img, (v) => BigInt(Math.round(v * max))));
  }

  /** One segment's inputs x (n rows of BigInt) → prime-major ciphertexts, one per input. */
  encryptSegment(seg, rows) {
    const n = rows.length;
    const lo = BigInt(seg.input_range[0]), hi = BigInt(seg.input_range[1]);
    const blobs = [];
    for (const s of seg.sets) {
      const slots = s.encoder.slotCount();
      if (n > slots) throw new Error(`${n} images: a batch holds at most ${slots}`);
      const column = new BigUint64Array(slots);
      for (let j = 0; j < seg.inputs; j++) {
        for (let i = 0; i < n; i++) {
          const v = rows[i][j];
          if (v < lo || v > hi) throw new Error(`input ${v} outside the plan's [${lo}, ${hi}]`);
          column[i] = v - lo;
        }
        const pt = new this.seal.Plaintext();
        s.encoder.encode(column, pt);
        blobs.push(s.encryptor.encryptSymmetricSerializable(pt).saveToArray(this.none));
        pt.delete();
      }
    }
    return blobs;
  }

  /** A segment's outputs (prime-major) → n rows of exact BigInt values (CRT-combined). */
  decryptSegment(seg, blobs, n) {
    const primes = seg.sets.length;
    if (blobs.length !== primes * seg.outputs) {
      throw new Error(`${blobs.length} output ciphertexts; expected ${primes * seg.outputs}`);
    }
    const residues = seg.sets.map((s, k) => {
      const cols = [];
      for (let j = 0; j < seg.outputs; j++) {
        const constant = seg.constant_outputs && seg.constant_outputs[String(j)];
        if (constant !== undefined) {
          const r = ((BigInt(constant) % s.t) + s.t) % s.t;
          cols.push(Array(n).fill(r));
          continue;
        }
        const ct = new this.seal.Ciphertext();
        ct.loadFromArray(s.context, blobs[k * seg.outputs + j]);
        const pt = new this.seal.Plaintext();
        s.decryptor.decrypt(ct, pt);
        cols.push(Array.from(s.encoder.decodeBigUint64(pt).slice(0, n), BigInt));
        ct.delete(); pt.delete();
      }
      return cols;
    });
    const moduli = seg.sets.map((s) => s.t);
    return Array.from({ length: n }, (_, i) => Array.from({ length: seg.outputs },
      (_, j) => crtCombine(residues.map((cols) => cols[j][i]), moduli)));
  }

  /** The whole plan: images → exact integer logits (BigInt rows); ``send(segment, blobs)``
   *  → the server's output blobs, once per segment; the client's ops run between them. */
  async infer(images, send, timings = {}, onProgress = null) {
    const add = (k, t0) => { timings[k] = (timings[k] || 0) + (performance.now() - t0) / 1000; };
    let rows = this.quantize(images);
    const n = rows.length;
    for (let k = 0; k < this.segments.length; k++) {
      const seg = this.segments[k];
      let t0 = performance.now();
      const blobs = this.encryptSegment(seg, rows);
      add('encrypt_s', t0);
      const outs = await send(k, blobs);
      t0 = performance.now();
      const values = this.decryptSegment(seg, outs, n);
      add('decrypt_s', t0);
      if (onProgress) onProgress(k + 1, this.segments.length);
      if (k === this.segments.length - 1) return values;
      t0 = performance.now();
      let state = { x: values.flat(), shape: this.desc.cut_shapes[k] };
      for (const op of this.desc.client_ops[k]) state = clientOp(op, state.x, state.shape);
      const width = product(state.shape);
      rows = Array.from({ length: n }, (_, i) => state.x.slice(i * width, (i + 1) * width));
      add('clear_s', t0);
    }
    throw new Error('the plan has no segments');
  }
}
