"""The tritonservers behind the API: gRPC asyncio clients, readiness, round-robin.

Each ``--triton-url HOST:PORT`` is resolved to its addresses on every check, so a DNS name
with several addresses (a Kubernetes headless Service) becomes several replicas; requests go
round-robin over the replicas that answered ``ServerReady``. A gRPC channel otherwise stays
pinned to one pod. A replica that fails readiness, or answers UNAVAILABLE, leaves the rotation
until its next successful check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from typing import Dict, List, Optional

import numpy as np

from hpi_triton.client import server_error, wire_parameters
from hpi_triton.errors import ServiceUnavailableError

log = logging.getLogger("hpi_triton.paddlex_api")


def _split(url: str):
    url = url.split("://", 1)[-1].rstrip("/")
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--triton-url {url!r}; expected HOST:PORT (tritonserver's gRPC port)")
    return host.strip("[]"), int(port)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host == "localhost"


class TritonPool:
    """Round-robin over the ready tritonservers behind ``urls`` (gRPC ``HOST:PORT``).

    Args:
        urls: gRPC endpoints; a DNS name may stand for several servers.
        interval: Seconds between readiness checks.
        timeout: Seconds one inference may take.
    """

    def __init__(self, urls: List[str], interval: float = 2.0, timeout: float = 300.0):
        self.targets = [_split(u) for u in urls]
        self.interval = interval
        self.timeout = timeout
        self.clients: Dict[str, object] = {}
        self.ready: List[str] = []
        self._next = 0
        self._outputs: Dict[str, List[str]] = {}
        self._task: Optional[asyncio.Task] = None

    async def _endpoints(self) -> List[str]:
        found: List[str] = []
        loop = asyncio.get_running_loop()
        for host, port in self.targets:
            if _is_literal(host):
                found.append(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
                continue
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("--triton-url %s:%s does not resolve: %s", host, port, exc)
                continue
            for info in infos:
                address = info[4][0]
                found.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
        return list(dict.fromkeys(found))

    async def refresh(self) -> None:
        """Resolve the URLs again and check every replica's readiness."""
        import tritonclient.grpc.aio as grpcclient

        endpoints = await self._endpoints()
        for gone in set(self.clients) - set(endpoints):
            await self.clients.pop(gone).close()
        for endpoint in endpoints:
            if endpoint not in self.clients:
                self.clients[endpoint] = grpcclient.InferenceServerClient(endpoint)
        ready = []
        for endpoint in endpoints:
            try:
                if await asyncio.wait_for(self.clients[endpoint].is_server_ready(), 2.0):
                    ready.append(endpoint)
            except Exception:  # tritonclient / grpc raise their own types: not ready
                pass
        self.ready = ready

    async def start(self) -> None:
        """First check, then a background task that checks every ``interval`` s."""
        await self.refresh()
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # keep checking whatever one round hit
                log.exception("checking the tritonservers failed")

    async def close(self) -> None:
        """Stop checking and close every channel."""
        if self._task is not None:
            self._task.cancel()
        for client in self.clients.values():
            await client.close()
        self.clients.clear()

    def _pick(self) -> str:
        if not self.ready:
            raise ServiceUnavailableError("no tritonserver behind this service is ready "
                                          "(--triton-url)")
        self._next = (self._next + 1) % len(self.ready)
        return self.ready[self._next]

    async def models(self) -> List[str]:
        """Names of the models the first ready replica holds READY."""
        client = self.clients[self._pick()]
        index = await client.get_model_repository_index(as_json=True)
        return [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]

    async def predict(self, model: str, image, params: Dict) -> dict:
        """Run the pipeline graph ``model`` on one image (a BGR array, or an image file's
        bytes the graph decodes: :class:`~hpi_triton.paddlex_api.files.EncodedImage`); its
        parsed result (arrays beside the JSON as numpy arrays).

        Raises:
            InvalidRequestError: the graph refused the image or a parameter.
            ServiceUnavailableError: no replica is ready, or the model is being reloaded.
            ServerFaultError: the server failed.
        """
        import tritonclient.grpc.aio as grpcclient

        if isinstance(image, np.ndarray):
            tensor = grpcclient.InferInput("image_array", list(image.shape), "UINT8")
            tensor.set_data_from_numpy(np.ascontiguousarray(image))
        else:  # the file itself: a few hundred kB instead of 3 bytes a pixel
            tensor = grpcclient.InferInput("image", [len(image.data)], "UINT8")
            tensor.set_data_from_numpy(np.frombuffer(image.data, np.uint8))
        wire = wire_parameters(params) or None
        for attempt in range(2):
            endpoint = self._pick()
            client = self.clients[endpoint]
            try:
                names = await self._output_names(client, model)
                result = await client.infer(
                    model, [tensor], parameters=wire, client_timeout=self.timeout,
                    outputs=[grpcclient.InferRequestedOutput(n) for n in names])
            except Exception as exc:  # tritonclient's InferenceServerException and grpc's
                error = server_error(f"pipeline {model!r} at {endpoint}", exc)
                if isinstance(error, ServiceUnavailableError) and attempt == 0 \
                        and "StatusCode.UNAVAILABLE" in getattr(error, "status", ""):
                    self.ready = [e for e in self.ready if e != endpoint]  # until rechecked
                    if self.ready:
                        continue
                raise error from exc
            raw = result.as_numpy("result").reshape(-1)[0]
            parsed = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            parsed.update({n: result.as_numpy(n) for n in names if n != "result"})
            return parsed
        raise AssertionError("unreachable")

    async def _output_names(self, client, model: str) -> List[str]:
        if model not in self._outputs:
            meta = await client.get_model_metadata(model, as_json=True)
            self._outputs[model] = [o["name"] for o in meta["outputs"]]
        return self._outputs[model]
