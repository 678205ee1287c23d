"""``Client``: the HTTP side of encrypted inference (httpx), retrying politely on 503.

The secret key never passes through here: callers hand over public-context bytes and
ciphertext bytes made by a plan's Client (``crypto_nn.client_for``).
"""

from __future__ import annotations

import time

import httpx

from crypto_nn.wire import framing
from nets.errors import UserError


class ServiceError(UserError):
    """The server answered with an error (problem+json detail included)."""


class Client:
    def __init__(
        self, base_url: str, *, token: str | None = None, timeout: float = 600.0, retries: int = 5
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.retries = retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        delay = 1.0
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                raise ServiceError(f"cannot reach {self._http.base_url}: {exc}") from None
            if response.status_code != 503 or attempt == self.retries:
                break
            time.sleep(float(response.headers.get("Retry-After", delay)))
            delay = min(delay * 2, 30.0)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(f"{method} {url} → {response.status_code}: {detail}")
        return response

    def health(self) -> dict:
        return self._request("GET", "/healthz").json()

    def models(self) -> list[dict]:
        return self._request("GET", "/v1/models").json()["models"]

    def model(self, name: str) -> dict:
        return self._request("GET", f"/v1/models/{name}").json()

    def register_key(self, public_context: bytes) -> str:
        return self._request(
            "POST",
            "/v1/keys",
            content=public_context,
            headers={"Content-Type": "application/octet-stream"},
        ).json()["key_id"]

    def _post_ciphertexts(
        self, url: str, key_id: str, ciphertexts: list[bytes], segment: int = 0
    ) -> httpx.Response:
        params = {"key_id": key_id, **({"segment": segment} if segment else {})}
        return self._request(
            "POST",
            url,
            params=params,
            content=framing.pack(ciphertexts),
            headers={"Content-Type": "application/octet-stream"},
        )

    def infer(
        self, name: str, key_id: str, ciphertexts: list[bytes], segment: int = 0
    ) -> list[bytes]:
        """One evaluation; ``segment``: which segment of a client-aided plan."""
        response = self._post_ciphertexts(f"/v1/models/{name}/infer", key_id, ciphertexts, segment)
        return framing.unpack(response.content)[1]

    def submit_job(self, name: str, key_id: str, ciphertexts: list[bytes], segment: int = 0) -> str:
        response = self._post_ciphertexts(f"/v1/models/{name}/jobs", key_id, ciphertexts, segment)
        return response.json()["job_id"]

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def wait_job(self, job_id: str, *, poll: float = 0.5, timeout: float = 3600.0) -> list[bytes]:
        """Poll until the job is done (→ output ciphertexts) or failed (→ ServiceError)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.job(job_id)
            if status["state"] == "done":
                return framing.unpack(self._request("GET", f"/v1/jobs/{job_id}/result").content)[1]
            if status["state"] == "failed":
                raise ServiceError(f"job {job_id} failed: {status.get('error')}")
            time.sleep(poll)
        raise ServiceError(f"job {job_id} still not finished after {timeout:.0f} s")
