from fastapi import APIRouter

from crypto_nn.roles import VERSION
from server.deps import Auth, ServicesDep
from server.schemas import ModelList, PlanDescription

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Auth])


@router.get("", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """Every served model's plan description (scheme, packing, parameters, encodings)."""
    return ModelList(
        protocol_version=VERSION,
        models=[PlanDescription(**m.plan.describe()) for m in services.models.values()],
    )


@router.get("/{name}", response_model=PlanDescription)
def get_model(name: str, services: ServicesDep) -> PlanDescription:
    """One served model's plan description (404 names the served ones)."""
    return PlanDescription(**services.model(name).plan.describe())
