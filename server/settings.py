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
    token: str | None = None  # bearer token; None = no authentication
    max_key_bytes: int = 64 * 2**20  # a context with relinearisation keys is a few MB
    max_infer_bytes: int = 768 * 2**20  # 784 CKKS ciphertexts at N=8192 are ~180 MB
    workers: int = Field(default=1, ge=1)  # evaluation processes (TenSEAL holds the GIL)
    max_queued: int = Field(default=2, ge=1)  # requests waiting or running; more get 503
    calibration_images: int = 500  # training images used to compile each plan
    cache_size: int = 4  # loaded contexts kept per worker
    packings: tuple[str, ...] = ("batch", "single")  # name.pt → name, name-single
    backend: Literal["process", "ray"] = "process"  # where batch jobs run
    ray_address: str | None = None  # a Ray cluster; None = start a local Ray
    ray_num_cpus: int | None = None  # local Ray only; None = all cores
