"""Single-image packing: how one image's values sit in a ciphertext's slots, layer by layer.

Pure numpy (no SEAL): the server turns this into plaintexts, the client only needs the
input layout, which travels in the plan description.

* **First affine layer — client-side im2col.** Output rows that read the same inputs (a
  convolution's channels at one position) form a *group*. The client writes input
  ``S_g[t]`` of group ``g`` into slot ``t·G + g`` (``T × G`` slots per chunk, powers of two,
  repeated to fill every slot; more chunks when the groups do not fit one ciphertext).
  Channel ``r`` is then one plaintext product and a rotate-and-add over ``t``
  (log2 T rotations), leaving ``y[row_r(g)]`` in slot ``g``, repeated with period ``G``.
* **Later affine layers — hybrid diagonal method** (Halevi–Shoup diagonals with the
  rectangular trick of GAZELLE, Juvekar et al. 2018): inputs are *blocks*, each a
  ciphertext repeated with a power-of-two period. ``m`` diagonals per block, evaluated
  baby-step/giant-step (baby steps by successive rotations by 1, giant steps by Horner
  with one step ``g``), then a rotate-and-add from ``m`` up to the block period. The
  output is one block repeated with period ``m`` — the form the next layer reads.

The Galois keys are few: powers of two, plus (for the ring route's hoisting) the baby
steps below ``HOIST_MAX_BABY`` and the first layer's input steps t·G, t < 2^HOIST_INPUT_LEVELS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crypto_nn.errors import CompileError

HOIST_INPUT_LEVELS = 3  # im2col: levels of the first rotate-and-add done on the input


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def rot(v: np.ndarray, k: int) -> np.ndarray:
    """SEAL's ``rotate_vector(ct, k)`` on plain slots: result[s] = v[s + k]."""
    return np.roll(v, -k)


@dataclass
class Block:
    """A ciphertext's meaning: slot s holds vector entry ``entries[s mod period]`` (−1: 0)."""

    entries: np.ndarray  # (period,) int
    period: int


@dataclass
class Im2col:
    """The first affine layer as the client's layout and one weight vector per channel."""

    layouts: list[np.ndarray]  # per chunk: (slots,) input index per slot, −1 = 0
    weights: list[list[np.ndarray]]  # [chunk][channel] (slots,) weight per slot
    blocks: list[Block]  # [chunk·channels + channel] output meaning after the rotate-and-add
    taps: int  # T (power of two)
    positions: int  # G (power of two)

    @property
    def rotations(self) -> list[int]:
        return [self.positions << k for k in range(self.taps.bit_length() - 1)]

    @property
    def input_copies(self) -> int:
        """H: the rotate-and-add's first log2 H levels, done on the input instead — the
        ring route rotates the one input by t·G (t < H) in a single hoisted call, shared by
        every channel, and multiplies each copy by the weights rotated alike (Σ_t rot(x,
        tG) ⊙ rot(w, tG) = the first levels' sum), so each channel keeps only the last
        log2(T/H) rotations of its own."""
        return min(1 << HOIST_INPUT_LEVELS, self.taps)

    @property
    def input_steps(self) -> list[int]:
        """The input's hoisted rotations t·G, 0 < t < H (their Galois keys are in the plan)."""
        return [t * self.positions for t in range(1, self.input_copies)]

    @property
    def rotations_after_hoisting(self) -> list[int]:
        return self.rotations[self.input_copies.bit_length() - 1 :]

    def rotated_weights(self, chunk: int, channel: int) -> list[np.ndarray]:
        """rot(w, t·G) for t < H: the weights each rotated copy of the input meets."""
        w = self.weights[chunk][channel]
        return [rot(w, t * self.positions) for t in range(self.input_copies)]


def im2col(weight: np.ndarray, slots: int) -> Im2col:
    """Group rows by their support and lay the groups out in chunks of ``slots`` slots."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(weight):
        groups.setdefault(tuple(np.flatnonzero(row).tolist()), []).append(i)
    supports = list(groups)
    taps = next_pow2(max(1, max(len(s) for s in supports)))
    if taps > slots:
        raise CompileError(
            f"an output of the first layer reads {taps} inputs; one ciphertext holds {slots}"
        )
    per_chunk = slots // taps
    positions = min(per_chunk, next_pow2(len(supports)))
    channels = max(len(rows) for rows in groups.values())
    layouts, weights, blocks = [], [], []
    for start in range(0, len(supports), positions):
        chunk = supports[start : start + positions]
        layout = np.full((taps, positions), -1, dtype=np.int64)
        w = np.zeros((channels, taps, positions))
        entries = np.full((channels, positions), -1, dtype=np.int64)
        for g, support in enumerate(chunk):
            layout[: len(support), g] = support
            for r, row in enumerate(groups[support]):
                w[r, : len(support), g] = weight[row, list(support)]
                entries[r, g] = row
        reps = slots // (taps * positions)
        layouts.append(np.tile(layout.reshape(-1), reps))
        weights.append([np.tile(w[r].reshape(-1), reps) for r in range(channels)])
        blocks += [Block(entries[r], positions) for r in range(channels)]
    return Im2col(layouts, weights, blocks, taps, positions)


HOIST_MAX_BABY = 8  # baby steps up to this many get their own Galois keys (hoisting)


@dataclass
class Diagonals:
    """A later affine layer: per (block, giant step j, baby step i) the pre-rotated diagonal
    plaintext values (None when zero), and the rotations that combine them."""

    plain: dict[tuple[int, int, int], np.ndarray]
    baby: int  # g
    giants: int  # J = m / g
    out_period: int  # m (power of two)
    in_period: int  # n' (power of two): rotate-and-add from m up to n'
    bias: np.ndarray  # (slots,) bias pattern of the output block
    out: Block
    skipped: int = 0  # nonzero diagonals dropped: they encode to a zero plaintext

    @property
    def rotations(self) -> list[int]:
        # every baby step, not just 1, while there are few: the ring route makes them from
        # one decomposition (hoisted), at one Galois key each (N 8192: about 1.5 MB before
        # compression); SEAL's evaluator — and the ring route past HOIST_MAX_BABY — rotates
        # by 1 successively
        steps = list(range(1, self.baby)) if self.baby <= HOIST_MAX_BABY else [1]
        steps += [self.baby] if self.giants > 1 else []
        step = self.out_period
        while step < self.in_period:
            steps.append(step)
            step *= 2
        return steps


def _best_baby(n_blocks: int, m: int) -> int:
    """Power-of-two baby step minimising n_blocks·(g − 1) + (m/g − 1) rotations."""
    options = [1 << k for k in range(m.bit_length())]
    return min(options, key=lambda g: (n_blocks * (g - 1) + m // g - 1, -g))


def exactly_zero(values: np.ndarray) -> bool:
    return not np.any(values)


def diagonals(
    weight: np.ndarray,
    bias: np.ndarray,
    blocks: list[Block],
    slots: int,
    encodes_to_zero: Callable[[np.ndarray], bool] = exactly_zero,
) -> Diagonals:
    """The hybrid diagonal form of ``weight`` (m × n) for inputs laid out as ``blocks``.

    A diagonal that ``encodes_to_zero`` (CKKS: every coefficient rounds to 0 at the weight
    scale) contributes nothing, and SEAL refuses its product ("transparent"): it is left
    out here and counted in ``skipped``."""
    m_rows = weight.shape[0]
    m = next_pow2(m_rows)
    n = max([m] + [b.period for b in blocks])
    if n > slots:
        raise CompileError(f"a layer needs {n} slots per vector; the ciphertext holds {slots}")
    g = _best_baby(len(blocks), m)
    s_idx = np.arange(n)
    plain: dict[tuple[int, int, int], np.ndarray] = {}
    skipped = 0
    for c, block in enumerate(blocks):
        mat = np.zeros((m, n))
        valid = np.flatnonzero(block.entries >= 0)
        mat[:m_rows, valid] = weight[:, block.entries[valid]]
        for k in range(m):
            diag = mat[s_idx % m, (s_idx + k) % n]
            if not diag.any():
                continue
            j, i = divmod(k, g)
            values = np.roll(np.tile(diag, slots // n), g * j)  # rot(diag, −g·j)
            if encodes_to_zero(values):
                skipped += 1
                continue
            plain[(c, j, i)] = values
    pattern = np.zeros(m)
    pattern[:m_rows] = bias
    entries = np.where(np.arange(m) < m_rows, np.arange(m), -1)
    return Diagonals(
        plain=plain,
        baby=g,
        giants=m // g,
        out_period=m,
        in_period=n,
        bias=np.tile(pattern, slots // m),
        out=Block(entries, m),
        skipped=skipped,
    )


def run_diagonals(diag: Diagonals, xs: list, plains: dict, *, rotate, multiply, add):
    """The baby-step/giant-step schedule on any representation of slot vectors (numpy
    here; SEAL ciphertexts in the CKKS and BFV evaluators): ``rotate(v, k)`` and
    ``multiply(v, plain)`` return new values, ``add(a, b)`` may reuse ``a``. ``plains``
    holds the encoded ``diag.plain``. Baby steps by successive rotations by 1, giant
    steps by Horner with step g, then the rotate-and-add from m to n'. → the output
    block before its bias, or None when every diagonal is zero."""
    baby = []
    for x in xs:
        row = [x]
        for _ in range(1, diag.baby):
            row.append(rotate(row[-1], 1))
        baby.append(row)
    by_giant: dict[int, list] = {}
    for (c, j, i), pt in plains.items():
        by_giant.setdefault(j, []).append((c, i, pt))
    acc = None
    for j in reversed(range(diag.giants)):
        if acc is not None:
            acc = rotate(acc, diag.baby)
        for c, i, pt in by_giant.get(j, []):
            term = multiply(baby[c][i], pt)
            acc = term if acc is None else add(acc, term)
    if acc is None:
        return None
    step = diag.out_period
    while step < diag.in_period:
        acc = add(acc, rotate(acc, step))
        step *= 2
    return acc


def apply_plain(diag: Diagonals, xs: list[np.ndarray]) -> np.ndarray:
    """The same schedule on plain slot vectors (tests check it against W·x)."""
    acc = run_diagonals(
        diag, xs, diag.plain, rotate=rot, multiply=lambda v, p: p * v, add=lambda a, b: a + b
    )
    return (np.zeros_like(xs[0]) if acc is None else acc) + diag.bias


def encode_image(layouts: list[np.ndarray], image: np.ndarray) -> list[np.ndarray]:
    """The client's side of im2col: one slot vector per chunk."""
    flat = np.concatenate([np.asarray(image, dtype=np.float64).reshape(-1), [0.0]])
    return [flat[layout] for layout in layouts]  # index −1 reads the appended 0


def bias_pattern(block: Block, bias: np.ndarray, slots: int) -> np.ndarray:
    """Slot values of ``bias`` for a block's entries, repeated over the slots."""
    padded = np.concatenate([np.asarray(bias, dtype=np.float64), [0.0]])
    return np.tile(padded[block.entries], slots // block.period)


def apply_im2col_plain(first: Im2col, bias: np.ndarray, inputs: list[np.ndarray]) -> list:
    """The first layer's schedule on plain slot vectors (for tests)."""
    out = []
    for chunk, x in enumerate(inputs):
        for r, w in enumerate(first.weights[chunk]):
            acc = x * w
            for step in first.rotations:
                acc = acc + rot(acc, step)
            block = first.blocks[chunk * len(first.weights[chunk]) + r]
            out.append(acc + bias_pattern(block, bias, len(x)))
    return out


@dataclass
class Step:
    """One stage of a single-packing program. ``kind``: im2col | diagonals | square | poly
    (poly: t = z² + a·z + b, its leading coefficient folded into the next layer's weights)."""

    kind: str
    im2col: Im2col | None = None
    diagonals: Diagonals | None = None
    biases: list[np.ndarray] | None = None  # im2col: bias pattern per output block
    a: float = 0.0
    b: float = 0.0


@dataclass
class Program:
    steps: list[Step]
    slots: int

    @property
    def layouts(self) -> list[np.ndarray]:
        return self.steps[0].im2col.layouts

    @property
    def skipped_diagonals(self) -> int:
        """Nonzero diagonals left out because they encode to the zero plaintext."""
        return sum(s.diagonals.skipped for s in self.steps if s.diagonals is not None)

    @property
    def rotations(self) -> list[int]:
        steps: set[int] = set()
        for step in self.steps:
            for part in (step.im2col, step.diagonals):
                if part is not None:
                    steps.update(part.rotations)
        return sorted(steps)

    @property
    def ring_rotations(self) -> list[int]:
        """:attr:`rotations` and the first layer's input steps t·G, which only CKKS's ring
        route uses (``single_ring``: the first levels of the rotate-and-add, hoisted)."""
        first = [s.im2col.input_steps for s in self.steps if s.im2col is not None]
        return sorted({*self.rotations, *(step for steps in first for step in steps)})


def min_slots(layers: list) -> int:
    """Slots the program needs at least: the widest vector and the first layer's taps."""
    first = layers[0].weight
    taps = max(int(np.count_nonzero(row)) for row in first)
    widths = [next_pow2(layer.weight.shape[0]) for layer in layers if layer.kind == "affine"]
    return max([next_pow2(taps)] + widths)


def check_shape(layers: list) -> None:
    """Single packing runs Affine (Square|Poly≤2 Affine)*: one activation per level."""
    kinds = [layer.kind for layer in layers]
    ok = kinds and kinds[0] == "affine" and kinds[-1] == "affine"
    ok = ok and all(
        (k == "affine") == (i % 2 == 0) and (k == "affine" or k in ("square", "poly"))
        for i, k in enumerate(kinds)
    )
    if not ok:
        raise CompileError(
            f"single packing needs affine layers separated by one activation each; this plan "
            f"is {' → '.join(kinds)} — use packing='batch'"
        )
    for layer in layers:
        if layer.kind == "poly" and (layer.degree != 2 or abs(layer.coeffs[2]) < 1e-9):
            raise CompileError(
                f"single packing evaluates degree-2 polynomials (fitted {layer.target} has degree "
                f"{layer.degree}); compile with poly_degree=2 or packing='batch'"
            )


def program(
    layers: list, slots: int, encodes_to_zero: Callable[[np.ndarray], bool] = exactly_zero
) -> Program:
    """The single-packing schedule of a plan's layers for ``slots`` slots.

    ``encodes_to_zero`` says which weight vectors the scheme would encode as a zero
    plaintext: such diagonals are skipped; a first-layer channel or a whole later layer
    that is all zero cannot run (SEAL has no product to return) and is refused here."""
    check_shape(layers)
    steps: list[Step] = []
    blocks: list[Block] = []
    fold = 1.0  # a poly's leading coefficient, moved into the next affine layer
    for layer in layers:
        if layer.kind == "affine":
            weight = layer.weight * fold
            where = f"affine layer {sum(s.kind in ('im2col', 'diagonals') for s in steps)}"
            if not steps:
                first = im2col(weight, slots)
                for chunk in first.weights:
                    for r, w in enumerate(chunk):
                        if encodes_to_zero(w):
                            raise CompileError(
                                f"{where}: output channel {r} has no weight that survives "
                                "encoding (all round to 0 at the weight scale), so its outputs "
                                "are constants SEAL cannot produce from the input; drop those "
                                "outputs, retrain, or use batch packing"
                            )
                biases = [bias_pattern(b, layer.bias, slots) for b in first.blocks]
                steps.append(Step("im2col", im2col=first, biases=biases))
                blocks = first.blocks
            else:
                diag = diagonals(weight, layer.bias, blocks, slots, encodes_to_zero)
                if not diag.plain:
                    raise CompileError(
                        f"{where}: every weight rounds to 0 at the weight scale, so its output "
                        "is the constant bias; remove the layer or retrain (batch packing "
                        "runs it)"
                    )
                steps.append(Step("diagonals", diagonals=diag))
                blocks = [diag.out]
            fold = 1.0
        elif layer.kind == "square":
            steps.append(Step("square"))
        else:
            c0, c1, c2 = layer.coeffs
            steps.append(Step("poly", a=c1 / c2, b=c0 / c2))
            fold = c2
    return Program(steps, slots)
