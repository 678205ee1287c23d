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


def init_worker(parent_pid: int) -> None:
    """Runs first in every worker: exit when the parent dies; SIGINT is the parent's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


class ProcessSlots:
    """``slots`` worker processes (spawned lazily); ``await run(fn, *args)``. ``warm``: a
    function every new worker runs before its first call (imports, kernels), so a call's
    memory is measured from a warm worker."""

    def __init__(self, slots: int, name: str = "worker", warm=None) -> None:
        self.name, self._warm = name, warm
        self._executors = [self._new() for _ in range(slots)]
        self._warmed: set[int] = set()  # id() of executors whose worker has run ``warm``
        self._free: asyncio.Queue | None = None
        self.crashes = self.out_of_memory = 0
        self._watches: set[asyncio.Task] = set()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1, mp_context=get_context("spawn"), initializer=init_worker, initargs=(os.getpid(),)
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
        if self._warm is None or id(executor) in self._warmed:
            return executor
        try:
            await asyncio.wrap_future(executor.submit(self._warm))
        except BrokenProcessPool:
            executor = self._replace(executor)
            await asyncio.wrap_future(executor.submit(self._warm))
        self._warmed.add(id(executor))
        return executor

    @staticmethod
    async def _watch(executor, future: Future, budget: int, killed: list[bool]) -> None:
        """Kill the worker once the call has grown it by more than ``budget`` bytes."""
        pids = list(executor._processes or {})
        if not pids:
            return
        pid = pids[0]
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
        _stop(executor)
        self._warmed.discard(id(executor))
        fresh = self._new()
        self._executors = [fresh if e is executor else e for e in self._executors]
        return fresh

    async def warm(self) -> int:
        """Start one free worker now and run ``warm`` in it (→ its pid)."""
        free = self._queue()
        executor = await free.get()
        try:
            executor = await self._warmed_up(executor)
            return next(iter(executor._processes or {}), 0)
        finally:
            free.put_nowait(executor)

    def pids(self) -> list[int]:
        return [pid for e in self._executors for pid in (e._processes or {})]

    def shutdown(self, grace_s: float = 3.0) -> None:
        """Stop every worker now (running work is abandoned: the caller marks it failed)."""
        for executor in self._executors:
            _stop(executor, grace_s)


def _stop(executor: ProcessPoolExecutor, grace_s: float = 3.0) -> None:
    processes = list((executor._processes or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)
    executor.shutdown(wait=True, cancel_futures=True)
