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
