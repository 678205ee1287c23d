from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    """Liveness, the served models and the work in flight (on the event loop itself: no
    thread-pool slot to wait for while uploads are being written)."""
    state = request.app.state
    return {
        "status": "ok",
        "models": sorted(state.models),
        "in_flight": state.gate.active,
        "uploads": state.uploads.active,
        "worker_crashes": state.workers.crashes + state.checker.crashes,
        "worker_out_of_memory": state.workers.out_of_memory,
    }
