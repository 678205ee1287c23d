"""Server settings: command-line flags, or ``CRYPTOROBUST_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRYPTOROBUST_", protected_namespaces=())

    models_dir: Path = Path("runs/models")  # checkpoints (*.pt) served under their file stem
    state_dir: Path = Path("runs/server-state")  # registered contexts (survive a restart)
    plans_dir: Path | None = None  # compiled plans, reused across starts; None = state_dir/plans
    token: str | None = None  # bearer token; None = no authentication
    max_key_bytes: int = 64 * 2**20  # a context with relinearisation keys is a few MB
    max_infer_bytes: int = 768 * 2**20  # 784 CKKS ciphertexts at N=8192 are ~180 MB
    workers: int = Field(default=1, ge=1)  # evaluation processes (TenSEAL holds the GIL)
    max_queued: int = Field(default=2, ge=1)  # requests waiting or running; more get 503
    calibration_images: int = 500  # training images used to compile each plan
    cache_size: int = 4  # loaded contexts kept per worker
    warm_workers: bool = True  # start workers (imports, kernels) at start-up, not on first use
    packings: tuple[str, ...] = ("batch", "single", "bfv")  # name.pt → name, name-single, name-bfv
    bfv_bits: int = Field(default=4, ge=2, le=16)  # weights and activations of name-bfv
    backend: Literal["process", "ray"] = "process"  # where batch jobs run
    ray_address: str | None = None  # a Ray cluster; None = start a local Ray
    ray_num_cpus: int | None = None  # local Ray only; None = all cores
    # --- limits a hostile client meets (shown at GET /v1/limits) -----------------------
    max_uploads: int = Field(default=64, ge=1)  # bodies being read at once; more get 503
    max_uploads_per_client: int = Field(default=4, ge=1)  # the same, per peer address
    max_buffered_bytes: int = Field(default=2 * 2**30, ge=1)  # /infer bodies held in memory
    body_idle_timeout_s: float = Field(default=10.0, gt=0)  # no byte for this long → 408
    body_timeout_s: float = Field(default=300.0, gt=0)  # a whole body, at most → 408
    max_keys: int = Field(default=1000, ge=1)  # registered contexts; past it, LRU eviction
    max_key_store_bytes: int = Field(default=8 * 2**30, ge=1)  # all contexts on disk
    max_jobs: int = Field(default=8, ge=1)  # batch jobs queued or running, all keys
    max_jobs_per_key: int = Field(default=2, ge=1)  # batch jobs queued or running, per key
    job_ttl_s: float = Field(default=24 * 3600.0, gt=0)  # results and failed jobs expire
    sweep_interval_s: float = Field(default=60.0, gt=0)  # how often expired jobs go
    shutdown_grace_s: float = Field(default=5.0, ge=0)  # in-flight requests on SIGTERM
    # memory one evaluation may add to its worker; None = sized from each plan (server.memory)
    worker_memory_mb: int | None = Field(default=None, ge=1)

    def limits(self) -> dict:
        """The limits a client can plan around (no paths, no token)."""
        names = (
            "max_key_bytes", "max_infer_bytes", "max_queued", "max_uploads",
            "max_uploads_per_client",
            "max_buffered_bytes", "body_idle_timeout_s", "body_timeout_s", "max_keys",
            "max_key_store_bytes", "max_jobs", "max_jobs_per_key", "job_ttl_s",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names} | {"workers": self.workers}
