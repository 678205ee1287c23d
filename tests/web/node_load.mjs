// The reverse direction, for the tests: objects the server's SEAL (4.3) wrote, rewritten to
// 4.1 by crypto_nn.wire.seal_version, loaded by node-seal. usage: node node_load.mjs DIR
// (DIR holds params.bin, secret.bin, ct_*.bin, relin.bin, galois.bin and spec.json) → JSON.
import fs from 'node:fs';
import path from 'node:path';
import initialize from '../../server/web/node_modules/node-seal/dist/index_throws.js';

const dir = process.argv[2];
const spec = JSON.parse(fs.readFileSync(path.join(dir, 'spec.json'), 'utf8'));
const read = (name) => Uint8Array.from(fs.readFileSync(path.join(dir, name)));
const seal = await initialize();
const scheme = spec.scheme === 'bfv' ? seal.SchemeType.bfv : seal.SchemeType.ckks;
const parms = new seal.EncryptionParameters(scheme);
parms.loadFromArray(read('params.bin'));
const context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
const secret = new seal.SecretKey();
secret.loadFromArray(context, read('secret.bin'));
const decryptor = new seal.Decryptor(context, secret);
const relin = new seal.RelinKeys();
relin.loadFromArray(context, read('relin.bin'));
const galois = new seal.GaloisKeys();
galois.loadFromArray(context, read('galois.bin'));
const values = {};
for (const name of spec.ciphertexts) {
  const ct = new seal.Ciphertext();
  ct.loadFromArray(context, read(name));
  const pt = new seal.Plaintext();
  decryptor.decrypt(ct, pt);
  values[name] = spec.scheme === 'bfv'
    ? Array.from(new seal.BatchEncoder(context).decodeBigUint64(pt).slice(0, 4), String)
    : Array.from(new seal.CKKSEncoder(context).decodeFloat64(pt).slice(0, 4));
}
// params written back by node-seal: the same bytes once rewritten to 4.3 (checked in Python)
fs.writeFileSync(path.join(dir, 'params.node.bin'), parms.saveToArray(seal.ComprModeType.none));
console.log(JSON.stringify({ values, relin_keys: relin.size(), galois_keys: galois.size() }));
