// The page: pick a served model, draw / drop / pick an image, press the button. All HE work
// happens in worker.js (a Web Worker); this module prepares pixels and shows results.
const $ = (id) => document.getElementById(id);
const state = { models: [], desc: null, samples: {}, image: null, imageNote: '', tab: 'one',
                token: sessionStorage.getItem('cryptorobust-token') || '' };
let worker = null;
let requestId = 0;

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

async function api(path) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  let response;
  try {
    response = await fetch(path, { headers });
  } catch (err) {
    throw new Error(`cannot reach the server (${err.message}): is it running?`);
  }
  if (response.status === 401) {
    $('token-row').hidden = false;
    throw new Error('this server needs an access token: enter it above');
  }
  if (!response.ok) throw new Error(`${path} → ${response.status}: ${await response.text()}`);
  return response.json();
}

// --- models -------------------------------------------------------------------------
const SUPPORTED = (d) => d.scheme === 'ckks' || (d.scheme === 'bfv' && d.packing === 'batch');

async function loadModels() {
  const select = $('model');
  state.models = (await api('/v1/models')).models;
  select.innerHTML = '';
  for (const d of state.models) {
    const option = document.createElement('option');
    option.value = d.name;
    const what = `${d.scheme.toUpperCase()} ${d.packing}`;
    option.textContent = SUPPORTED(d) ? `${d.name} (${what})`
      : `${d.name} (${what}: use python -m client for now)`;
    option.disabled = !SUPPORTED(d);
    select.append(option);
  }
  const first = state.models.find(SUPPORTED);
  if (!first) throw new Error('this server serves no CKKS model the page can use');
  select.value = first.name;
  select.disabled = false;
  await chooseModel(first.name);
}

async function chooseModel(name) {
  state.desc = state.models.find((d) => d.name === name);
  const d = state.desc;
  const [c, h, w] = d.input.shape;
  const slots = d.params.poly_modulus_degree / (d.scheme === 'bfv' ? 1 : 2);
  $('model-info').textContent = `${d.output.classes.length} classes, input ${c}×${h}×${w}, ` +
    (d.packing === 'batch' ? `up to ${slots} images per request` : 'one image per request');
  $('batch-n').max = d.packing === 'batch' ? slots : 64;
  await loadSamples();
  $('batch-info').textContent = d.packing === 'batch'
    ? `The images go in one request (one ciphertext per pixel, one image per slot).`
    : `This model takes one image per request: the batch is sent image by image.`;
  state.image = null;
  drawPreview(null);
  $('run').disabled = true;
}

// --- images -------------------------------------------------------------------------
async function loadSamples() {
  const [, h, w] = state.desc.input.shape;
  const file = h === 8 && w === 8 ? 'digits' : 'fashion-mnist';
  if (!state.samples[file]) {
    const s = await (await fetch(`/static/samples/${file}.json`)).json();
    const raw = Uint8Array.from(atob(s.pixels_base64), (ch) => ch.charCodeAt(0));
    const size = s.shape.reduce((a, b) => a * b, 1);
    s.images = s.labels.map((_, i) => Float64Array.from(raw.subarray(i * size, (i + 1) * size),
      (v) => v / 255));
    state.samples[file] = s;
  }
  const s = state.samples[file];
  const ok = s.shape[1] === h && s.shape[2] === w;
  const box = $('samples');
  box.innerHTML = '';
  if (!ok) return;
  s.images.slice(0, 12).forEach((img, i) => {
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    c.title = `test image ${s.test_indices[i]}: ${s.classes[s.labels[i]]}`;
    c.dataset.index = i;
    paint(c, img, w, h);
    c.addEventListener('click', () => {
      for (const other of box.children) other.classList.remove('chosen');
      c.classList.add('chosen');
      setImage(img, `test image ${s.test_indices[i]} (${s.classes[s.labels[i]]})`);
    });
    box.append(c);
  });
  state.sampleSet = s;
}

function paint(canvas, pixels, w, h) {
  const ctx = canvas.getContext('2d');
  const data = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const v = Math.round(pixels[i] * 255);
    data.data.set([v, v, v, 255], i * 4);
  }
  if (canvas.width === w) { ctx.putImageData(data, 0, 0); return; }
  const small = new OffscreenCanvas(w, h);
  small.getContext('2d').putImageData(data, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function drawPreview(pixels) {
  const [, h, w] = state.desc ? state.desc.input.shape : [1, 28, 28];
  const canvas = $('preview');
  if (!pixels) {
    canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
    $('preview-caption').textContent = 'what is encrypted';
    return;
  }
  paint(canvas, pixels, w, h);
}

function setImage(pixels, note) {
  state.image = pixels;
  drawPreview(pixels);
  $('preview-caption').textContent = note;
  $('run').disabled = false;
}

/** Any picture → the plan's grey H×W pixels in [0, 1], as the data sets were made: light
 *  object on a dark background (inverted when the border is light), fitted into the
 *  central box with its aspect ratio kept, centred. */
function toPixels(source, sw, sh, background = '#000') {
  const [, h, w] = state.desc.input.shape;
  const work = new OffscreenCanvas(w, h);
  const ctx = work.getContext('2d', { willReadFrequently: true });
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, w, h);
  const box = w >= 20 ? 20 / 28 : 1;  // MNIST-style margin on 28×28 inputs
  const scale = Math.min((w * box) / sw, (h * box) / sh);
  const dw = sw * scale, dh = sh * scale;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, (w - dw) / 2, (h - dh) / 2, dw, dh);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const grey = new Float64Array(w * h);
  for (let i = 0; i < w * h; i++) {
    grey[i] = (0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) / 255;
  }
  return grey;
}

function imageFromFile(file) {
  if (!file.type.startsWith('image/')) {
    showError(`${file.name} is not an image (${file.type || 'unknown type'}): drop a PNG or JPEG`);
    return;
  }
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    // light background (a photo of dark ink on paper): invert, as the data sets are light-on-dark
    const probe = new OffscreenCanvas(img.width, img.height).getContext('2d');
    probe.drawImage(img, 0, 0);
    const px = probe.getImageData(0, 0, img.width, img.height).data;
    let border = 0, n = 0;
    for (let x = 0; x < img.width; x++) for (const y of [0, img.height - 1]) {
      const i = 4 * (y * img.width + x); border += px[i] + px[i + 1] + px[i + 2]; n += 3;
    }
    const inverted = border / n > 127;
    const pixels = inverted  // margins filled with the picture's own background, then inverted
      ? toPixels(img, img.width, img.height, '#fff').map((v) => 1 - v)
      : toPixels(img, img.width, img.height);
    URL.revokeObjectURL(url);
    const [, h, w] = state.desc.input.shape;
    setImage(pixels, `${file.name}: ${img.width}×${img.height} → ${w}×${h}` +
      (inverted ? ', inverted (light background)' : '') + ', centred');
  };
  img.onerror = () => showError(`${file.name}: the browser cannot decode this image`);
  img.src = url;
}

function setupDrawing() {
  const canvas = $('draw');
  const ctx = canvas.getContext('2d');
  let down = false;
  const clear = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener('pointerdown', (e) => { down = true; ctx.beginPath(); ctx.moveTo(...at(e)); });
  canvas.addEventListener('pointermove', (e) => {
    if (!down) return;
    ctx.lineWidth = 18; ctx.lineCap = 'round'; ctx.strokeStyle = '#fff';
    ctx.lineTo(...at(e)); ctx.stroke();
  });
  const finish = () => {
    if (!down) return;
    down = false;
    if (state.desc) setImage(toPixels(canvas, canvas.width, canvas.height), 'your drawing, resized');
  };
  canvas.addEventListener('pointerup', finish);
  canvas.addEventListener('pointerleave', finish);
  $('clear').addEventListener('click', () => { clear(); state.image = null; drawPreview(null); $('run').disabled = true; });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault(); drop.classList.remove('over');
    if (e.dataTransfer.files.length) imageFromFile(e.dataTransfer.files[0]);
  });
  $('file').addEventListener('change', (e) => { if (e.target.files.length) imageFromFile(e.target.files[0]); });
}

// --- running ------------------------------------------------------------------------
function step(text, name = null) {
  const list = $('progress');
  const last = list.lastElementChild;
  if (name && last && last.dataset.step === name) {  // a counter of the same step: one line
    last.textContent = text;
    return;
  }
  const li = document.createElement('li');
  li.textContent = text;
  if (name) li.dataset.step = name;
  list.append(li);
}

function softmax(row) {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function showResult(msg, count) {
  const classes = state.desc.output.classes;
  const scale = msg.exact ? msg.outputScale : 1;  // BFV: integer logit × its scale = real logit
  const probs = msg.logits.map((row) => softmax(row.map((v) => v * scale)));
  const first = probs[0];
  const order = [...first.keys()].sort((a, b) => first[b] - first[a]);
  const name = (k) => classes[k] ?? String(k);
  $('prediction').textContent = count === 1
    ? `Prediction: ${name(order[0])} (class ${order[0]})`
    : `${count} predictions; the first: ${name(order[0])} (class ${order[0]})`;
  $('prediction').dataset.classes = JSON.stringify(msg.logits.map((r) => r.indexOf(Math.max(...r))));
  if (msg.exact) {
    $('prediction').textContent += ' — bit-exact integer logits';
    $('prediction').dataset.integers = JSON.stringify(msg.integers);
  }
  const bars = $('bars');
  bars.innerHTML = '';
  for (const k of order.slice(0, 3)) {
    const row = document.createElement('div');
    row.className = 'bar';
    const label = document.createElement('span');
    label.textContent = `${name(k)} ${(100 * first[k]).toFixed(1)} %`;
    const bar = document.createElement('div');
    bar.style.width = `${Math.max(2, 300 * first[k])}px`;
    row.append(label, bar);
    bars.append(row);
  }
  const t = msg.timings;
  const rows = [
    ['keys', msg.keysKept ? 'kept by this browser (no keygen, no registration)'
      : `keygen ${t.keygen_s.toFixed(2)} s, register ${t.register_s.toFixed(2)} s`],
    ['encrypt', `${t.encrypt_s.toFixed(2)} s`],
    ['server (round trip)', `${t.server_s.toFixed(2)} s`],
    ['decrypt', `${t.decrypt_s.toFixed(3)} s`],
    ['sent / received', `${(msg.sizes.up / 1024).toFixed(0)} KB / ${(msg.sizes.down / 1024).toFixed(0)} KB`],
  ];
  if (t.load_s) rows.unshift(['load SEAL (wasm)', `${t.load_s.toFixed(2)} s`]);
  const body = $('timings').tBodies[0];
  body.innerHTML = '';
  for (const [k, v] of rows) {
    const tr = body.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  $('result').hidden = false;
  $('result').dataset.timings = JSON.stringify({ ...t, ...msg.sizes, keysKept: msg.keysKept });
}

function run() {
  showError('');
  $('progress').innerHTML = '';
  $('result').hidden = true;
  let images;
  if (state.tab === 'one') {
    if (!state.image) { showError('draw, drop or pick an image first'); return; }
    images = [state.image];
  } else {
    const n = Math.max(1, Math.min(Number($('batch-n').value) || 1, Number($('batch-n').max)));
    const pool = state.sampleSet.images;
    images = Array.from({ length: n }, (_, i) => pool[i % pool.length]);
  }
  $('run').disabled = true;
  const id = ++requestId;
  worker.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === 'progress') step(`${msg.step}: ${msg.detail}`, msg.step);
    else if (msg.type === 'result') { step('done'); showResult(msg, images.length); $('run').disabled = false; }
    else if (msg.type === 'error') { showError(msg.message); $('run').disabled = false; }
  };
  worker.postMessage({ cmd: 'infer', id, origin: location.origin, token: state.token,
                       desc: state.desc, images });
}

async function main() {
  if (typeof WebAssembly === 'undefined' || typeof Worker === 'undefined') {
    showError('This browser has no WebAssembly or Web Workers: the encryption cannot run here. ' +
      'Use a current Firefox, Chrome or Safari, or the Python client (python -m client).');
    return;
  }
  worker = new Worker('/static/worker.js', { type: 'module' });
  worker.onerror = (e) => showError(`the encryption worker failed to start: ${e.message || 'see the server log'} ` +
    '(is node-seal installed on the server? make web)');
  setupDrawing();
  $('model').addEventListener('change', (e) => chooseModel(e.target.value).catch((err) => showError(err.message)));
  $('run').addEventListener('click', run);
  $('forget').addEventListener('click', () => {
    if (!state.desc) return;
    worker.onmessage = (e) => { if (e.data.type === 'forgotten') step('this browser forgot its keys for this model'); };
    worker.postMessage({ cmd: 'forget', origin: location.origin, desc: state.desc });
  });
  $('token').addEventListener('change', (e) => {
    state.token = e.target.value;
    sessionStorage.setItem('cryptorobust-token', state.token);
    loadModels().then(() => showError('')).catch((err) => showError(err.message));
  });
  for (const tab of ['one', 'batch']) {
    $(`tab-${tab}`).addEventListener('click', () => {
      state.tab = tab;
      $('tab-one').classList.toggle('active', tab === 'one');
      $('tab-batch').classList.toggle('active', tab === 'batch');
      $('one').hidden = tab !== 'one';
      $('batch').hidden = tab !== 'batch';
      $('run').disabled = tab === 'one' && !state.image;
    });
  }
  try {
    await loadModels();
  } catch (err) {
    showError(err.message);
  }
}

main();
