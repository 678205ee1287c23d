from fastapi import APIRouter, Request

from server import memory
from server.deps import Auth

router = APIRouter(prefix="/v1", tags=["health"], dependencies=[Auth])


@router.get("/limits")
def limits(request: Request) -> dict:
    """The limits this server enforces (sizes, timeouts, quotas) and how much is used."""
    state = request.app.state
    override = state.settings.worker_memory_mb
    return {
        "limits": state.settings.limits()
        | {
            "worker_memory_bytes": {
                name: memory.budget_for(model.plan, override)
                for name, model in sorted(state.models.items())
            }
        },
        "usage": {
            "keys": state.keys.usage(),
            "jobs": state.jobs.usage(),
            "uploads": state.uploads.active,
            "evaluations": state.gate.active,
        },
    }
