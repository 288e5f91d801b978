"""The asyncio client: :class:`AsyncClient`, with :class:`hpi_triton.client.Client`'s methods as
coroutines, over tritonclient's ``http.aio`` (aiohttp) and ``grpc.aio`` clients.

One instance serves any number of tasks of one event loop. Reading files and rendering PDF
pages run in the loop's default executor, so they do not stall other requests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import AsyncIterator, Callable, Dict, Optional

import numpy as np

from hpi_triton.client import (
    DEFAULT_CONCURRENCY,
    ImageInput,
    announce,
    check_concurrency,
    check_protocol,
    checked_inputs,
    connection_error,
    image_tensor,
    names_an_unknown_model,
    naming_input,
    pipeline_result,
    same_but_case,
    served_names,
    server_error,
    unknown_model_error,
    wire_parameters,
)
from hpi_triton.errors import HpiTritonError, InferError


class AsyncClient:
    """An asyncio client over tritonclient's aio clients; use ``async with`` or ``close()``.

    Args:
        url: ``HOST:PORT`` of the server's HTTP or gRPC endpoint.
        protocol: ``http`` or ``grpc``.
        timeout: Seconds a request may take.
    """

    def __init__(self, url: str, protocol: str = "http", timeout: float = 120.0):
        self.protocol = check_protocol(protocol)
        self.url = url.split("://", 1)[-1]
        self.timeout = timeout
        if self.protocol == "http":
            import tritonclient.http.aio as module

            self._client = module.InferenceServerClient(self.url, conn_timeout=timeout)
        else:
            import tritonclient.grpc.aio as module

            self._client = module.InferenceServerClient(self.url)
        self._module = module
        self._metadata: Dict[str, dict] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def metadata(self, model: str) -> dict:
        """The server's metadata for ``model``, cached per model.

        Raises:
            InferError: the server cannot be reached or does not hold ``model``.
        """
        if model not in self._metadata:
            try:
                if self.protocol == "http":
                    meta = await self._client.get_model_metadata(model)
                else:
                    meta = await self._client.get_model_metadata(model, as_json=True)
            except Exception as exc:  # tritonclient and aiohttp raise their own types
                meta = await self._first_contact_failed(model, exc)
            self._metadata[model] = meta
        return self._metadata[model]

    async def _first_contact_failed(self, model: str, exc: Exception) -> dict:
        """As :meth:`Client.metadata <hpi_triton.client.Client.metadata>`: a connection
        problem named with its fix, an unknown model with the served names, and a name that
        differs from a served one only in case (build's rule) resolved to it."""
        error = connection_error(self.url, self.protocol, exc)
        if error is not None:
            raise error from exc
        if not names_an_unknown_model(exc):
            raise InferError(f"model {model!r} at {self.url}: {exc}") from exc
        try:
            if self.protocol == "http":
                served = served_names(await self._client.get_model_repository_index())
            else:
                served = served_names(
                    await self._client.get_model_repository_index(as_json=True))
        except Exception:  # noqa: BLE001 - the refusal below still says what was asked
            served = None
        match = same_but_case(model, served or [])
        if match is None:
            raise unknown_model_error(self.url, model, served) from exc
        return await self.metadata(match)

    async def infer(self, model: str, inputs: Dict[str, np.ndarray],
                    outputs: Optional[list] = None) -> Dict[str, np.ndarray]:
        """Run ``model`` on ``inputs``; every output by name (errors as
        :meth:`Client.infer <hpi_triton.client.Client.infer>`)."""
        meta = await self.metadata(model)
        model = meta.get("name", model)
        request = []
        for name, array, datatype in checked_inputs(model, meta, inputs):
            tensor = self._module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            request.append(tensor)
        names = outputs or [o["name"] for o in meta["outputs"]]
        result = await self._call(f"model {model!r}", model, request, names, None)
        return {n: result.as_numpy(n) for n in names}

    async def predict(self, pipeline: str, image: ImageInput, **params) -> dict:
        """Run a served pipeline on one image; its PaddleX-shaped result (arguments and
        errors as :meth:`Client.predict <hpi_triton.client.Client.predict>`)."""
        if isinstance(image, (str, Path)):  # a file read off the loop
            name, array = await asyncio.get_running_loop().run_in_executor(
                None, image_tensor, image)
        else:
            name, array = image_tensor(image)
        tensor = self._module.InferInput(name, list(array.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        meta = await self.metadata(pipeline)
        names = [o["name"] for o in meta["outputs"]]
        pipeline = meta.get("name", pipeline)
        result = await self._call(f"pipeline {pipeline!r}", pipeline, [tensor], names,
                                  wire_parameters(params) or None)
        return pipeline_result(result, names)

    async def _call(self, what: str, model: str, request, names, parameters):
        try:
            return await self._client.infer(
                model, request, parameters=parameters,
                outputs=[self._module.InferRequestedOutput(n) for n in names])
        except Exception as exc:
            raise server_error(f"{what} at {self.url}", exc) from exc

    async def predict_many(self, pipeline: str, inputs, *,
                           concurrency: int = DEFAULT_CONCURRENCY, dpi: int = 144,
                           pdf_password: Optional[str] = None,
                           on_result: Optional[Callable] = None,
                           **params) -> AsyncIterator:
        """Yield one :class:`~hpi_triton.results.Prediction` per image or PDF page of
        ``inputs``, in input order, with at most ``concurrency`` requests in flight
        (arguments as :meth:`Client.predict_many
        <hpi_triton.client.Client.predict_many>`)."""
        from hpi_triton.inputs import expand
        from hpi_triton.results import Prediction

        check_concurrency(concurrency)
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(
            None, lambda: expand(inputs, dpi=dpi, password=pdf_password))
        gate = asyncio.Semaphore(concurrency)

        async def run(item) -> Prediction:
            prediction = Prediction(item.index, item.label, item.page_index, pipeline,
                                    item=item)
            async with gate:
                try:
                    if item.error is not None:
                        raise item.error
                    data = await loop.run_in_executor(None, item.load)
                    prediction.result = await self.predict(pipeline, data, **params)
                except HpiTritonError as exc:
                    prediction.error = naming_input(exc, item)
            return prediction

        pending: deque = deque()
        try:
            for item in items:
                pending.append(asyncio.ensure_future(run(item)))
                if len(pending) >= 2 * concurrency:
                    yield announce(await pending.popleft(), on_result)
            while pending:
                yield announce(await pending.popleft(), on_result)
        finally:
            for task in pending:
                task.cancel()

    async def inference_statistics(self) -> dict:
        """The server's ``/v2/models/stats`` as JSON."""
        try:
            if self.protocol == "http":
                return await self._client.get_inference_statistics()
            return await self._client.get_inference_statistics(as_json=True)
        except Exception as exc:
            raise InferError(f"statistics at {self.url}: {exc}") from exc

    async def is_model_ready(self, model: str) -> bool:
        """Whether ``model`` is loaded and ready."""
        try:
            return bool(await self._client.is_model_ready(model))
        except Exception as exc:
            raise InferError(f"no Triton server answers at {self.url} ({exc})") from exc

    async def close(self) -> None:
        """Close the connection (the aiohttp session / the gRPC channel)."""
        await self._client.close()

