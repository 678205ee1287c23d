from fastapi import APIRouter, Request

from server.deps import Auth

router = APIRouter(prefix="/v1", tags=["health"], dependencies=[Auth])


@router.get("/limits")
def limits(request: Request) -> dict:
    """The limits this server enforces (sizes, timeouts, quotas) and how much is used."""
    state = request.app.state
    return {
        "limits": state.settings.limits(),
        "usage": {
            "keys": state.keys.usage(),
            "jobs": state.jobs.usage(),
            "uploads": state.uploads.active,
            "evaluations": state.gate.active,
        },
    }
