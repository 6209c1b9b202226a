"""Small clients for the gateway tests: raw HTTP (httpx) and stock tritonclient gRPC."""

from __future__ import annotations

import collections
import threading
from typing import Any, Self

import httpx
import numpy as np
import tritonclient.grpc as grpcclient

from .conftest import KEYS


def bearer(key_name: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[key_name]}"} if key_name else {}


def toy_body(values: list[float] | None = None, *, batch: int = 1) -> dict[str, Any]:
    data = (values or [1.0, 2.0, 3.0, 4.0]) * batch
    return {"inputs": [{"name": "x", "shape": [batch, 4], "datatype": "FP32", "data": data}]}


def infer_http(
    client: httpx.Client,
    model: str = "toy",
    version: str | None = None,
    *,
    key: str | None = "reader",
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    path = f"/v2/models/{model}/infer" if version is None else f"/v2/models/{model}/versions/{version}/infer"
    return client.post(path, json=body or toy_body(), headers={**bearer(key), **(headers or {})})


def version_of_answer(response: httpx.Response) -> int:
    """The toy model's y = x * version + 1 at x = 1 tells which version ran."""
    y0 = response.json()["outputs"][0]["data"][0]
    return round(y0 - 1.0)


def infer_grpc(
    url: str,
    model: str = "toy",
    version: str = "",
    *,
    key: str | None = "reader",
    headers: dict[str, str] | None = None,
    batch: int = 1,
) -> Any:
    """One stock-tritonclient inference; returns the InferResult (raises InferenceServerException)."""
    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput("x", [batch, 4], "FP32")
        tensor.set_data_from_numpy(np.tile(np.array([[1, 2, 3, 4]], dtype=np.float32), (batch, 1)))
        return client.infer(
            model, [tensor], model_version=version, headers={**bearer(key), **(headers or {})}
        )
    finally:
        client.close()


class Traffic:
    """Continuous inference traffic in background threads (one HTTP and one gRPC worker per pair)."""

    def __init__(
        self,
        http_url: str,
        grpc_url: str,
        *,
        model: str = "toy",
        version: str | None = None,
        key: str | None = "reader",
        pairs: int = 1,
    ) -> None:
        self.http_url, self.grpc_url = http_url, grpc_url
        self.model, self.version, self.key, self.pairs = model, version, key, pairs
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.versions: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.threads: list[threading.Thread] = []

    def _record(self, version: str | None, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.ok += 1
                self.versions[version or "?"] += 1
            else:
                self.failures.append(failure)

    def _http_worker(self) -> None:
        with httpx.Client(base_url=self.http_url, timeout=30.0) as client:
            while not self.stop_event.is_set():
                try:
                    response = infer_http(client, self.model, self.version, key=self.key)
                    if response.status_code == 200:
                        self._record(response.headers.get("x-hepsonic-model-version"), None)
                    else:
                        self._record(None, f"http {response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self._record(None, f"http {exc!r}")

    def _grpc_worker(self) -> None:
        client = grpcclient.InferenceServerClient(self.grpc_url)
        tensor = grpcclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3, 4]], dtype=np.float32))
        try:
            while not self.stop_event.is_set():
                try:
                    result = client.infer(
                        self.model, [tensor], model_version=self.version or "", headers=bearer(self.key)
                    )
                    self._record(result.get_response().model_version, None)
                except Exception as exc:  # noqa: BLE001
                    self._record(None, f"grpc {exc}")
        finally:
            client.close()

    def __enter__(self) -> Self:
        for _ in range(self.pairs):
            for worker in (self._http_worker, self._grpc_worker):
                thread = threading.Thread(target=worker, daemon=True)
                thread.start()
                self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)
