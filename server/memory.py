"""Each evaluation runs under a memory limit sized from its plan, so a request that makes
SEAL or our kernels allocate too much fails alone instead of taking the machine down.

Why ``RLIMIT_DATA`` set around each call, not a cgroup or ``RLIMIT_AS``: cgroups are not
writable in most containers (nor here), and address-space limits count the gigabyte of
reservations numba, LLVM and glibc's arenas make without touching it. ``RLIMIT_DATA``
(Linux ≥ 4.7) counts the heap and every private writable mapping — what ``VmData`` in
``/proc/self/status`` shows — so "what this process holds now + the plan's budget" is a
limit on exactly the memory an evaluation can add. Past it, malloc fails: numpy, SEAL
(``std::bad_alloc``) and numba all raise ``MemoryError``, which the pool turns into
:class:`WorkerOutOfMemory` (HTTP 507) and a fresh worker.
"""

from __future__ import annotations

import contextlib
import resource

MiB = 1 << 20
FLOOR = 512 * MiB  # the least any evaluation gets: SEAL's pools, numba's threads, buffers
PER_REQUEST_BYTE = 8  # measured peak growth ≤ 4× a request's ciphertext bytes; twice that


class WorkerOutOfMemory(RuntimeError):
    """An evaluation needed more than its worker's memory limit; the worker was replaced."""


def fresh_ciphertext_bytes(spec) -> int:
    """Uncompressed bytes of one fresh ciphertext of a key spec's parameters."""
    k = len(spec.coeff_mod_bit_sizes) - 1  # the special prime is not a data level
    return 2 * k * spec.poly_modulus_degree * 8


def budget_for(plan, override_mb: int | None = None) -> int:
    """The memory one evaluation of ``plan`` may add to its worker: ``override_mb`` when
    set, else ``PER_REQUEST_BYTE`` × its largest request's ciphertext bytes, at least
    :data:`FLOOR`."""
    if override_mb is not None:
        return override_mb * MiB
    segments = getattr(plan, "segment_count", 1)
    inputs = max(plan.input_count(k) for k in range(segments))
    per_ct = max(fresh_ciphertext_bytes(spec) for spec in plan.key_specs())
    return max(FLOOR, PER_REQUEST_BYTE * inputs * per_ct)


def data_bytes() -> int:
    """This process's ``VmData`` (what ``RLIMIT_DATA`` limits), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmData in /proc/self/status")


@contextlib.contextmanager
def limited(budget: int):
    """Run the block with at most ``budget`` more bytes of data memory than now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data_bytes() + budget
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
