from fastapi import APIRouter, HTTPException, Request

from crypto_nn.roles import VERSION
from server.deps import Auth

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Auth])


@router.get("")
def list_models(request: Request) -> dict:
    """Every served model's plan description (scheme, packing, parameters, encodings)."""
    return {
        "protocol_version": VERSION,
        "models": [m.plan.describe() for m in request.app.state.models.values()],
    }


@router.get("/{name}")
def get_model(name: str, request: Request) -> dict:
    models = request.app.state.models
    if name not in models:
        raise HTTPException(404, f"unknown model {name!r}; served: {', '.join(sorted(models))}")
    return models[name].plan.describe()
