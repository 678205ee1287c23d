from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> dict:
    """Liveness, the served models and the work in flight."""
    state = request.app.state
    return {
        "status": "ok",
        "models": sorted(state.models),
        "in_flight": state.gate.active,
        "uploads": state.uploads.active,
        "worker_crashes": state.workers.crashes + state.checker.crashes,
    }
