"""The JSON every route answers with, as pydantic models: FastAPI validates each answer
against its model and documents it in the OpenAPI schema (``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str] = Field(description="Served model names.")
    in_flight: int = Field(description="Evaluations running or waiting.")
    uploads: int = Field(description="Request bodies being read.")
    worker_crashes: int
    worker_out_of_memory: int


class Usage(BaseModel):
    keys: dict[str, int] = Field(description="Stored keys and their bytes.")
    jobs: dict[str, int] = Field(description="Active jobs and the bytes jobs hold on disk.")
    uploads: int
    evaluations: int


class Limits(BaseModel):
    limits: dict[str, Any] = Field(
        description="Sizes (bytes), timeouts (s) and quotas this server enforces; "
        "worker_memory_bytes per model."
    )
    usage: Usage


class PlanDescription(BaseModel):
    """A served plan, as ``crypto_nn`` publishes it: everything a client needs to make
    keys and encrypt (no weights). Scheme-specific fields are kept as they are."""

    model_config = ConfigDict(extra="allow")

    format: str
    version: int
    name: str
    scheme: Literal["ckks", "bfv"]
    packing: Literal["batch", "single"]
    params: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]


class ModelList(BaseModel):
    protocol_version: int
    models: list[PlanDescription]


class KeyRegistered(BaseModel):
    key_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Name it in inference calls.")
    models: list[str] = Field(description="Served models these keys can be used with.")
    refused: dict[str, str] = Field(description="Model → why these keys cannot serve it.")
    dropped_parts: list[str] = Field(description="Key parts no usable model needs: not kept.")
    evicted: int = Field(description="Least recently used keys removed to make room.")


class JobAccepted(BaseModel):
    job_id: str
    state: Literal["queued"]


class JobStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    model: str
    key_id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float = Field(ge=0.0, le=1.0)
    created: float = Field(description="Unix time.")
    inputs: int = Field(description="Ciphertexts in the job's input.")
    finished: float | None = None
    error: str | None = None
    ran_on: dict[str, Any] | None = Field(
        default=None, description="Backend (process or ray) and where the job ran."
    )


BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
BINARY_BODY = {"requestBody": {"required": True, "content": BINARY}}
BINARY_RESPONSE = {200: {"content": BINARY, "description": "crypto_nn.wire.framing bytes."}}
