"""Logistic regression trained by gradient descent on CKKS-encrypted data (thesis Table 3.1,
the training row): the server never sees a feature, a label or a weight in the clear.

Layout: feature j of every sample in the slots of one ciphertext X_j; the labels in one
ciphertext Y; each weight a ciphertext holding it in every slot. The samples (padded to a
power of two, P) are tiled across all slots, so a rotate-and-add over log2 P steps leaves
the sum over samples in *every* slot — the gradient comes out already replicated, ready to
subtract from the weights. The learning rate and 1/m are folded into the sigmoid
polynomial's coefficients and into the labels (the client sends lr/m · y), so one step is:

    z = Σ_j w_j·X_j + b                      1 level
    e = c·σ₃(z) − c·y,  σ₃ = a0 + a1 z + a3 z³  2 levels (z², then a3·z·z²)
    w_j ← w_j − Σ_slots e·X_j,  b ← b − Σ_slots e·mask   1 level

Four levels per step; with N = 16384 and 40-bit primes (the most 128-bit security allows)
the chain holds seven, so after each step the client decrypts and re-encrypts the d + 1
weight ciphertexts (a refresh: one round trip) — what a client-aided protocol does instead
of bootstrapping, which SEAL does not have. Written on SEAL's evaluator (TenSEAL's vectors
cannot return a slot sum replicated across slots).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import tenseal.sealapi as seal

from crypto_nn.ckks.params import CkksParams
from crypto_nn.errors import ContextError
from crypto_nn.wire import seal_bytes

SCALE_BITS = 40
PARAMS = CkksParams(16384, (60, 40, 40, 40, 40, 40, 40, 40, 60), SCALE_BITS)
LEVELS_PER_STEP = 4
SIGMOID_RANGE = 8.0


def sigmoid_poly(radius: float = SIGMOID_RANGE) -> tuple[float, float, float]:
    """(a0, a1, a3): the least-squares odd cubic a0 + a1·z + a3·z³ to the sigmoid on
    [−radius, radius] (Kim et al. 2018 fit the same kind of polynomial for HE training)."""
    z = np.linspace(-radius, radius, 2001)
    basis = np.stack([np.ones_like(z), z, z**3], axis=1)
    coef, *_ = np.linalg.lstsq(basis, 1 / (1 + np.exp(-z)), rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def _period(m: int, slots: int) -> int:
    p = 1
    while p < m:
        p *= 2
    if p > slots:
        raise ContextError(f"{m} samples: one ciphertext holds at most {slots}; train on fewer")
    return p


@dataclass
class EncryptedData:
    features: list  # X_j, one seal.Ciphertext per feature
    labels: object  # c·y
    period: int  # P: samples padded to a power of two, tiled across the slots
    samples: int


@dataclass
class Trace:
    """What a training run cost: time on each side, round trips, bytes."""

    server_s: float = 0.0
    client_s: float = 0.0
    round_trips: int = 0
    steps: int = 0
    upload_bytes: int = 0
    history: list = field(default_factory=list)


class LogRegClient:
    """Holds the secret key; encrypts the data once and refreshes the weights."""

    def __init__(self, params: CkksParams = PARAMS) -> None:
        self.params = params
        self.context = params.seal_context()
        self._keygen = seal.KeyGenerator(self.context)
        self._secret = self._keygen.secret_key()
        self.encoder = seal.CKKSEncoder(self.context)
        self.encryptor = seal.Encryptor(self.context, self._secret)
        self.decryptor = seal.Decryptor(self.context, self._secret)

    def evaluation_keys(self, period: int) -> tuple[bytes, bytes | None, list[int]]:
        """Serialised relinearisation keys and Galois keys of steps 1, 2, …, P/2 — what the
        server gets; never the secret."""
        tool = self.context.key_context_data().galois_tool()
        steps = [1 << i for i in range(period.bit_length() - 1)]
        elts = [tool.get_elt_from_step(s) for s in steps]
        galois = seal_bytes.dumps(self._keygen.create_galois_keys(elts)) if elts else None
        return seal_bytes.dumps(self._keygen.create_relin_keys()), galois, steps

    def _encrypt(self, values) -> seal.Ciphertext:
        pt, ct = seal.Plaintext(), seal.Ciphertext()
        v = float(values) if np.isscalar(values) else np.asarray(values, float).tolist()
        self.encoder.encode(v, self.params.scale, pt)
        self.encryptor.encrypt_symmetric(pt, ct)
        return ct

    def encrypt_data(self, x: np.ndarray, y: np.ndarray, lr: float) -> EncryptedData:
        m, _ = x.shape
        p = _period(m, self.params.slots)
        reps = self.params.slots // p

        def tiled(col: np.ndarray) -> np.ndarray:
            padded = np.zeros(p)
            padded[:m] = col
            return np.tile(padded, reps)

        feats = [self._encrypt(tiled(x[:, j])) for j in range(x.shape[1])]
        return EncryptedData(feats, self._encrypt(tiled(lr / m * y)), p, m)

    def encrypt_weights(self, w: np.ndarray, b: float) -> list:
        return [self._encrypt(float(v)) for v in (*w, b)]

    def decrypt_weights(self, cts: list) -> tuple[np.ndarray, float]:
        vals = []
        for ct in cts:
            pt = seal.Plaintext()
            self.decryptor.decrypt(ct, pt)
            vals.append(float(np.mean(self.encoder.decode_double(pt)[:8])))
        return np.array(vals[:-1]), vals[-1]


class LogRegServer:
    """One gradient step on ciphertexts; knows no secret."""

    def __init__(
        self, params: CkksParams, relin: bytes, galois: bytes | None, steps: list[int], lr, m
    ):
        context = params.seal_context()
        self.context, self.steps = context, steps
        self.relin = seal_bytes.loads(seal.RelinKeys, relin, context, what="relin keys")
        self.galois = (
            seal_bytes.loads(seal.GaloisKeys, galois, context, what="galois keys")
            if galois
            else None
        )
        self.encoder = seal.CKKSEncoder(context)
        self.ev = seal.Evaluator(context)
        self.scale = float(2**SCALE_BITS)
        a0, a1, a3 = sigmoid_poly()
        c = lr / m
        self.c0, self.c1, self.c3 = c * a0, c * a1, c * a3

    def _plain(self, value, like) -> seal.Plaintext:
        pt = seal.Plaintext()
        self.encoder.encode(float(value), like.parms_id(), self.scale, pt)
        return pt

    def _rescale(self, ct) -> None:
        """Rescale, then call the scale Δ again: the primes are within ~2^-20 of 2^40, and an
        exact scale is what lets results of different paths be added."""
        self.ev.rescale_to_next_inplace(ct)
        ct.scale = self.scale

    def _down(self, ct, like):
        out = seal.Ciphertext()
        self.ev.mod_switch_to(ct, like.parms_id(), out)
        return out

    def _mul(self, a, b):
        out = seal.Ciphertext()
        self.ev.multiply(a, b, out)
        self.ev.relinearize_inplace(out, self.relin)
        return out

    def _slot_sum(self, ct) -> None:
        for s in self.steps:
            r = seal.Ciphertext()
            self.ev.rotate_vector(ct, s, self.galois, r)
            self.ev.add_inplace(ct, r)

    def levels_left(self, ct) -> int:
        return self.context.get_context_data(ct.parms_id()).chain_index()

    def step(self, data: EncryptedData, weights: list) -> list:
        *w, b = weights
        x = [self._down(xj, w[0]) for xj in data.features]
        z = self._mul(w[0], x[0])
        for wj, xj in zip(w[1:], x[1:], strict=True):
            self.ev.add_inplace(z, self._mul(wj, xj))
        bias = seal.Ciphertext()
        self.ev.multiply_plain(b, self._plain(1.0, b), bias)  # to the scale Δ² of z
        self.ev.add_inplace(z, bias)
        self._rescale(z)  # level −1
        z2 = self._mul(z, z)
        self._rescale(z2)  # level −2
        t = seal.Ciphertext()
        self.ev.multiply_plain(z, self._plain(self.c3, z), t)
        self._rescale(t)  # c3·z, level −2
        lin = seal.Ciphertext()
        self.ev.multiply_plain(z, self._plain(self.c1, z), lin)
        self._rescale(lin)  # c1·z, level −2
        e = self._mul(z2, t)
        self._rescale(e)  # c3·z³, level −3
        self.ev.add_inplace(e, self._down(lin, e))
        self.ev.add_plain_inplace(e, self._plain(self.c0, e))
        self.ev.sub_inplace(e, self._down(data.labels, e))
        out = []
        for wj, xj in zip(w, data.features, strict=True):
            g = self._mul(e, self._down(xj, e))
            self._rescale(g)  # level −4
            self._slot_sum(g)
            new = self._down(wj, g)
            self.ev.sub_inplace(new, g)
            out.append(new)
        mask = self._mask(data, e)
        gb = seal.Ciphertext()
        self.ev.multiply_plain(e, mask, gb)
        self._rescale(gb)
        self._slot_sum(gb)
        nb = self._down(b, gb)
        self.ev.sub_inplace(nb, gb)
        out.append(nb)
        return out

    def _mask(self, data: EncryptedData, like) -> seal.Plaintext:
        period = np.zeros(data.period)
        period[: data.samples] = 1.0
        slots = self.encoder.slot_count()
        pt = seal.Plaintext()
        values = np.tile(period, slots // data.period).tolist()
        self.encoder.encode(values, like.parms_id(), self.scale, pt)
        return pt


def train_plain(x, y, epochs: int, lr: float, sigmoid: str = "exact"):
    """The same full-batch gradient descent in the clear (float64): ``exact`` sigmoid or
    the ``poly`` cubic the encrypted run evaluates."""
    a0, a1, a3 = sigmoid_poly()
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(epochs):
        z = x @ w + b
        p = 1 / (1 + np.exp(-z)) if sigmoid == "exact" else a0 + a1 * z + a3 * z**3
        e = p - y
        w = w - lr * (x.T @ e) / len(y)
        b = b - lr * e.mean()
    return w, b


def train_encrypted(x, y, epochs: int, lr: float, params: CkksParams = PARAMS):
    """Client and server in one process, roles kept apart: the client encrypts the data
    once, the server runs every step, the client refreshes the weights when the next step
    would run out of levels. Returns (w, b, trace)."""
    trace = Trace()
    t0 = time.perf_counter()
    client = LogRegClient(params)
    data = client.encrypt_data(x, y, lr)
    relin, galois, steps = client.evaluation_keys(data.period)
    weights = client.encrypt_weights(np.zeros(x.shape[1]), 0.0)
    trace.upload_bytes = sum(len(seal_bytes.dumps(ct)) for ct in (*data.features, data.labels))
    trace.client_s += time.perf_counter() - t0
    trace.upload_bytes += len(relin) + len(galois or b"")
    server = LogRegServer(params, relin, galois, steps, lr, len(y))
    for epoch in range(epochs):
        if server.levels_left(weights[0]) < LEVELS_PER_STEP:
            t0 = time.perf_counter()
            weights = client.encrypt_weights(*client.decrypt_weights(weights))
            trace.client_s += time.perf_counter() - t0
            trace.round_trips += 1
        t0 = time.perf_counter()
        weights = server.step(data, weights)
        trace.server_s += time.perf_counter() - t0
        trace.steps += 1
        trace.history.append({"epoch": epoch + 1, "levels_left": server.levels_left(weights[0])})
    t0 = time.perf_counter()
    w, b = client.decrypt_weights(weights)
    trace.client_s += time.perf_counter() - t0
    return w, b, trace
