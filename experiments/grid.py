"""Run the cells of a grid sequentially, or as Ray tasks when the user asks for Ray.

Each cell is a pure function of its arguments (seeded inside), so the results are the
same either way. We start Ray only for the grid and shut it down afterwards — unless the
user pointed us at a running cluster (``--ray-address``), which we leave running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nets.errors import UserError


def run_cells(
    fn: Callable[..., Any],
    cells: Sequence[dict[str, Any]],
    *,
    ray: bool = False,
    address: str | None = None,
    on_done: Callable[[int, int], None] | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(**cell) for cell in cells]``, in order, optionally on Ray; ``on_result(i, r)``
    hears each cell's result as soon as it exists (to keep it on disk)."""
    if not ray and address is None:
        out = []
        for i, cell in enumerate(cells):
            out.append(fn(**cell))
            if on_result is not None:
                on_result(i, out[-1])
            if on_done is not None:
                on_done(i + 1, len(cells))
        return out
    try:
        import ray as ray_mod
    except ImportError:  # pragma: no cover - ray is a declared extra
        raise UserError("--ray needs Ray: pip install 'ray[default]'") from None
    started = not ray_mod.is_initialized()
    if started:
        ray_mod.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray_mod.remote(num_cpus=1)(fn)
        refs = [remote.remote(**cell) for cell in cells]
        out, pending = [None] * len(refs), dict(zip(refs, range(len(refs)), strict=True))
        done = 0
        while pending:
            ready, _ = ray_mod.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                out[i] = ray_mod.get(ref)
                if on_result is not None:
                    on_result(i, out[i])
                done += 1
                if on_done is not None:
                    on_done(done, len(cells))
        return out
    finally:
        if started and address is None:
            ray_mod.shutdown()
