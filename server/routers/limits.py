from fastapi import APIRouter

from server import memory
from server.deps import Auth, ServicesDep
from server.schemas import Limits, Usage

router = APIRouter(prefix="/v1", tags=["health"], dependencies=[Auth])


@router.get("/limits", response_model=Limits)
def limits(services: ServicesDep) -> Limits:
    """The limits this server enforces (sizes, timeouts, quotas) and how much is used."""
    override = services.settings.worker_memory_mb
    budgets = {
        name: memory.budget_for(model.plan, override)
        for name, model in sorted(services.models.items())
    }
    return Limits(
        limits=services.settings.limits() | {"worker_memory_bytes": budgets},
        usage=Usage(
            keys=services.keys.usage(),
            jobs=services.jobs.usage(),
            uploads=services.uploads.active,
            evaluations=services.gate.active,
        ),
    )
