"""Worker processes: one single-process executor per slot, so a crash fails one request.

A ``ProcessPoolExecutor`` with several processes marks *every* pending future broken when
one worker dies; here each slot is its own one-process executor, work is handed to a free
slot only, and a slot whose process died is replaced alone — the request that was running
on it fails, the ones waiting for a slot never notice. Workers watch their parent: when
the API process dies (even by SIGKILL) they exit within a second instead of living on
with PPID 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from server import memory
from server.memory import WorkerOutOfMemory

log = logging.getLogger(__name__)


class WorkerCrashed(RuntimeError):
    """The process running this call died (signal, abort, out of memory)."""


def _watch_parent(parent_pid: int, period_s: float = 0.5) -> None:
    while True:
        time.sleep(period_s)
        if os.getppid() != parent_pid:
            os._exit(0)  # the API is gone: nobody will read our result


def ready(warm=None) -> int:
    """A new worker's first call: run ``warm`` (imports, kernels) → the worker's pid, which
    the pool keeps to watch its memory and stop it (the executor's own process table is
    private to the standard library)."""
    if warm is not None:
        warm()
    return os.getpid()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not): from /proc."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115  (one read)
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def init_worker(parent_pid: int, threads: int | None = None) -> None:
    """Runs first in every worker: exit when the parent dies; SIGINT is the parent's;
    ``threads``: numba's and torch's thread count, set before either is imported. Workers
    share the cores: two workers of two threads each on two cores made every parallel
    kernel wait at its barrier for a descheduled thread (measured: CKKS single on our
    kernels 10× slower, 2.8 s against 0.26 s, with four busy threads on two cores)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group
    if threads is not None:
        for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


class ProcessSlots:
    """``slots`` worker processes (spawned lazily); ``await run(fn, *args)``. ``warm``: a
    function every new worker runs before its first call (imports, kernels), so a call's
    memory is measured from a warm worker."""

    def __init__(self, slots: int, name: str = "worker", warm=None) -> None:
        self.name, self._warm = name, warm
        # each worker's share of the cores, never more than the operator's NUMBA_NUM_THREADS
        cap = int(os.environ.get("NUMBA_NUM_THREADS", 0)) or cores()
        self.threads = max(1, min(cap, cores() // slots))
        self._executors = [self._new() for _ in range(slots)]
        self._pids: dict[int, int] = {}  # id(executor) → its worker's pid, once it has run
        self._free: asyncio.Queue | None = None
        self.crashes = self.out_of_memory = 0
        self._watches: set[asyncio.Task] = set()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1,
            mp_context=get_context("spawn"),
            initializer=init_worker,
            initargs=(os.getpid(), self.threads),
        )

    def _queue(self) -> asyncio.Queue:
        if self._free is None:  # bound to the running loop on first use
            self._free = asyncio.Queue()
            for executor in self._executors:
                self._free.put_nowait(executor)
        return self._free

    async def run(self, fn, *args, memory_budget: int | None = None):
        """Run ``fn(*args)`` in a free worker; :class:`WorkerCrashed` if its process dies,
        :class:`WorkerOutOfMemory` if the call grew the worker by more than
        ``memory_budget`` bytes (killed) or raised ``MemoryError`` — the worker is replaced
        either way."""
        free = self._queue()
        executor = await free.get()
        try:
            executor = await self._warmed_up(executor)
            future: Future = executor.submit(fn, *args)
        except BrokenProcessPool:
            executor = self._replace(executor)
            future = executor.submit(fn, *args)
        except BaseException:
            free.put_nowait(executor)
            raise
        killed: list[bool] = []
        if memory_budget is not None:
            watch = asyncio.create_task(self._watch(executor, future, memory_budget, killed))
            self._watches.add(watch)  # a strong reference until the watch ends
            watch.add_done_callback(self._watches.discard)

        def release(done: Future, executor=executor) -> None:
            broken = not done.cancelled() and isinstance(
                done.exception(), BrokenProcessPool | MemoryError
            )
            free.put_nowait(self._replace(executor) if broken else executor)

        # the slot comes back when the work ends, even if the request was cancelled first
        loop = asyncio.get_running_loop()

        def on_done(done: Future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
                loop.call_soon_threadsafe(release, done)

        future.add_done_callback(on_done)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            if killed:
                self.out_of_memory += 1
                log.warning("%s grew past its memory budget; replaced", self.name)
                raise WorkerOutOfMemory(f"the {self.name} grew past its memory budget") from None
            self.crashes += 1
            log.error("%s process died while running %s", self.name, fn.__name__)
            raise WorkerCrashed(f"the {self.name} process died during this call") from None
        except MemoryError:
            self.out_of_memory += 1
            log.warning("%s ran out of memory in %s; replaced", self.name, fn.__name__)
            raise WorkerOutOfMemory(f"the {self.name} ran out of memory") from None

    async def _warmed_up(self, executor: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """The executor with its worker started, warm, and its pid known."""
        if id(executor) in self._pids:
            return executor
        try:
            pid = await asyncio.wrap_future(executor.submit(ready, self._warm))
        except BrokenProcessPool:
            executor = self._replace(executor)
            pid = await asyncio.wrap_future(executor.submit(ready, self._warm))
        self._pids[id(executor)] = pid
        return executor

    async def _watch(self, executor, future: Future, budget: int, killed: list[bool]) -> None:
        """Kill the worker once the call has grown it by more than ``budget`` bytes."""
        pid = self._pids.get(id(executor))
        if pid is None:
            return
        base = memory.rss_bytes(pid)
        while base is not None and not future.done():
            rss = memory.rss_bytes(pid)
            if rss is None:
                return
            if rss - base > budget:
                killed.append(True)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
            await asyncio.sleep(memory.POLL_S)

    def _replace(self, executor: ProcessPoolExecutor) -> ProcessPoolExecutor:
        _stop(executor, self._pids.pop(id(executor), None))
        fresh = self._new()
        self._executors = [fresh if e is executor else e for e in self._executors]
        return fresh

    async def warm(self) -> int:
        """Start one free worker now and run ``warm`` in it (→ its pid)."""
        free = self._queue()
        executor = await free.get()
        try:
            executor = await self._warmed_up(executor)
            return self._pids[id(executor)]
        finally:
            free.put_nowait(executor)

    def pids(self) -> list[int]:
        return [self._pids[id(e)] for e in self._executors if id(e) in self._pids]

    def shutdown(self, grace_s: float = 3.0) -> None:
        """Stop every worker now (running work is abandoned: the caller marks it failed)."""
        for executor in self._executors:
            _stop(executor, self._pids.pop(id(executor), None), grace_s)


def _stop(executor: ProcessPoolExecutor, pid: int | None, grace_s: float = 3.0) -> None:
    """SIGTERM the worker, SIGKILL it after ``grace_s``, then let the executor reap it."""
    if pid is not None and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    executor.shutdown(wait=True, cancel_futures=True)
