from fastapi import APIRouter

from server.deps import ServicesDep
from server.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(services: ServicesDep) -> Health:
    """Liveness, the served models and the work in flight (on the event loop itself: no
    thread-pool slot to wait for while uploads are being written)."""
    return Health(
        status="ok",
        models=sorted(services.models),
        in_flight=services.gate.active,
        uploads=services.uploads.active,
        worker_crashes=services.workers.crashes + services.checker.crashes,
        worker_out_of_memory=services.workers.out_of_memory,
    )
