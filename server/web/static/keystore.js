// This browser's keys, per server and plan, in IndexedDB — so a second image skips keygen
// and registration, as the Python client's key file does. The secret key is stored only
// encrypted: AES-GCM under a WebCrypto key made non-extractable (script can use it, never
// read it), itself kept in IndexedDB. Nothing here is ever sent anywhere.

const DB = 'cryptorobust-keys';
const STORE = 'keys';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

const get = (id) => run('readonly', (s) => s.get(id));
const put = (id, value) => run('readwrite', (s) => s.put(value, id));
const remove = (id) => run('readwrite', (s) => s.delete(id));

async function wrappingKey() {
  let key = await get('wrapping-key');
  if (!key) {
    key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false,
      ['encrypt', 'decrypt']);
    await put('wrapping-key', key);
  }
  return key;
}

/** The id a plan's keys are kept under: the server, the plan's name and its parameters. */
export function keyName(origin, desc) {
  return `${origin}|${desc.name}|${JSON.stringify(desc.params)}`;
}

export async function load(name) {
  const entry = await get(name);
  if (!entry) return null;
  const secret = new Uint8Array(await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: entry.iv }, await wrappingKey(), entry.sealed));
  return { keyId: entry.keyId, client: entry.client, secret };
}

export async function save(name, { keyId, client, secret }) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, await wrappingKey(), secret);
  secret.fill(0);
  await put(name, { keyId, client, iv, sealed });
}

export async function updateKeyId(name, keyId) {
  const entry = await get(name);
  if (entry) await put(name, { ...entry, keyId });
}

export const forget = remove;
