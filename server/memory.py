"""Each evaluation runs under a memory limit sized from its plan, so a request that makes
SEAL or our kernels allocate too much fails alone instead of taking the machine down.

How: while a call runs, the API process reads the worker's resident memory every
:data:`POLL_S` and kills the worker (SIGKILL) once it has grown more than the budget past
what it held when the call began (warm: modules and kernels loaded first); the request
gets 507 and the slot a fresh worker. Why not ``RLIMIT_AS``/``RLIMIT_DATA`` inside the
worker: malloc then fails wherever it happens to be, and SEAL 4.3's memory pool takes a
spin lock that a ``std::bad_alloc`` never releases — the worker's next allocation spins
forever (seen here: a worker hung in ``SEALContext`` after one failed allocation). Why not
a cgroup: not writable in most containers (nor here). Between two polls a worker can
touch at most a few hundred MB more than its budget (page faults run at ~5–10 GB/s).
"""

from __future__ import annotations

MiB = 1 << 20
FLOOR = 512 * MiB  # the least any evaluation gets: SEAL's pools, numba's threads, buffers
PER_REQUEST_BYTE = 8  # a first evaluation grew 2.7× its request (tenseal-tutorial, 784 cts)


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


POLL_S = 0.01


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory (``VmRSS``), or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
