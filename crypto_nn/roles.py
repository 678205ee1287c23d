"""The three roles every scheme and packing fills, and the plan file both sides share.

- a compiled :class:`Plan` — ``describe()`` is the versioned JSON a client needs (no
  weights the client may not see beyond what its packing reveals), ``key_specs()`` the
  key sets it needs, ``evaluator(context)`` the server side, ``save(path)`` / ``load``;
- a :class:`Client` — built from the plan's JSON alone (``crypto_nn.client_for``): keys,
  the public context, and ``infer(images, send)``, the whole protocol whatever its round
  trips, against ``send(segment, ciphertexts) → ciphertexts`` (in process, or HTTP);
- an :class:`Evaluator` — ``run(ciphertexts, on_progress, segment)`` → ciphertexts.

Ciphertexts cross every boundary as flat lists of SEAL bytes (BFV: prime-major).

A plan file is ``MAGIC``, one line of JSON (format, version, scheme, packing, name,
``source``: what it was compiled from) and a pickle of the plan. Pickle, because a plan
holds numpy arrays, dataclasses and slot programs that would otherwise need a format of
their own; plan files are written by this server or its operator and read like
checkpoints — never accepted from a client (clients only ever send SEAL bytes).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from crypto_nn.errors import CompileError
from crypto_nn.wire.key_checks import KeySpec

FORMAT = "cryptorobust.plan"
VERSION = 1  # of descriptions and plan files; new fields are added, never renamed
MAGIC = b"CRPLAN\n"

OnProgress = Callable[[float], None]  # the fraction done, 0 … 1
Send = Callable[[int, list[bytes]], list[bytes]]


@runtime_checkable
class Evaluator(Protocol):
    def run(
        self, payloads: list[bytes], on_progress: OnProgress | None = None, *, segment: int = 0
    ) -> list[bytes]: ...


@runtime_checkable
class Plan(Protocol):
    name: str
    scheme: str
    packing: str

    def describe(self) -> dict[str, object]: ...

    def key_specs(self) -> list[KeySpec]: ...

    def evaluator(self, public_context: bytes) -> Evaluator: ...

    def input_count(self, segment: int = 0) -> int: ...


@runtime_checkable
class Client(Protocol):
    def public_context(self) -> bytes: ...

    def infer(
        self,
        images: np.ndarray,
        send: Send,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray: ...


def check_pixels(images: np.ndarray) -> None:
    """Every client's inputs: pixels in [0, 1], what the plans' parameters were chosen for."""
    from crypto_nn.errors import ContextError

    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ContextError(
            f"pixel values span [{images.min():.3g}, {images.max():.3g}]; the "
            "plan's parameters were chosen for images in [0, 1]"
        )


def check_segment(segment: int, segments: int) -> None:
    from crypto_nn.errors import ContextError

    if not 0 <= segment < segments:
        raise ContextError(
            f"segment {segment}; this plan has {segments} (0 to {segments - 1})"
            if segments > 1
            else f"segment {segment}; this plan runs in one request (segment 0)"
        )


def header(plan: Plan, source: dict | None = None) -> dict[str, object]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "scheme": plan.scheme,
        "packing": plan.packing,
        "name": plan.name,
        "source": source or {},
    }


def save(plan: Plan, path: str | Path, source: dict | None = None) -> Path:
    """Atomically: a reader never sees half a plan."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        out.write(MAGIC + json.dumps(header(plan, source)).encode() + b"\n")
        pickle.dump(plan, out, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path


def read_header(path: str | Path) -> dict[str, object]:
    """The plan file's header, checked for format and version (nothing unpickled)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic, line = f.read(len(MAGIC)), f.readline(1 << 16)
    except OSError as exc:
        raise CompileError(f"plan file {path}: {exc.strerror}") from None
    if magic != MAGIC:
        raise CompileError(f"{path} is not a cryptorobust plan file")
    try:
        head = json.loads(line)
    except ValueError:
        raise CompileError(f"{path}: plan header is not JSON") from None
    if head.get("format") != FORMAT or head.get("version") != VERSION:
        raise CompileError(
            f"{path}: plan format {head.get('format')} version {head.get('version')}; this "
            f"cryptorobust reads version {VERSION} — compile the plan again"
        )
    return head


def load(path: str | Path) -> Plan:
    path = Path(path)
    read_header(path)
    with path.open("rb") as f:
        f.read(len(MAGIC))
        f.readline(1 << 16)
        try:
            return pickle.load(f)
        except (AttributeError, ModuleNotFoundError, ImportError) as exc:  # classes moved
            raise CompileError(
                f"{path}: saved by another version of cryptorobust ({exc}); compile it again"
            ) from None


def parse_description(text_or_dict) -> dict[str, object]:
    """A plan description (JSON text or dict), checked for format and version (clients)."""
    if isinstance(text_or_dict, dict):
        desc = text_or_dict
    else:
        try:
            desc = json.loads(text_or_dict)
        except json.JSONDecodeError as exc:
            raise CompileError(f"plan description is not JSON ({exc})") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise CompileError("not a cryptorobust plan description")
    if not isinstance(desc.get("version"), int) or desc["version"] > VERSION:
        raise CompileError(
            f"plan format version {desc.get('version')}; this cryptorobust "
            f"reads up to {VERSION} — upgrade it"
        )
    return desc


def key_description(specs: list[KeySpec]) -> list[dict[str, object]]:
    """The ``keys`` section of a description: what the client's context must hold."""
    return [
        {
            "parts": sorted(spec.parts),
            "poly_modulus_degree": spec.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(spec.coeff_mod_bit_sizes),
            **({"plain_modulus": spec.plain_modulus} if spec.plain_modulus else {}),
            "rotations": list(spec.rotations),
        }
        for spec in specs
    ]


def timed(timings: dict[str, float] | None, key: str, fn: Callable[[], object]):
    """``fn()``, adding its wall time to ``timings[key]`` (clients split encrypt / server /
    decrypt / clear time this way)."""
    import time

    start = time.perf_counter()
    try:
        return fn()
    finally:
        if timings is not None:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


class Progress:
    """``on_progress(fraction)`` for an evaluation of ``total`` equal steps (layers × primes):
    ``step()`` after each; nothing when ``on_progress`` is None."""

    def __init__(self, total: int, on_progress: OnProgress | None) -> None:
        self.total, self.done, self.report = max(1, total), 0, on_progress

    def step(self) -> None:
        self.done += 1
        if self.report is not None:
            self.report(min(1.0, self.done / self.total))
