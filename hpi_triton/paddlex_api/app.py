"""The FastAPI application: PaddleX 3.7.2's serving API over the pipeline graphs.

Responses use PaddleX's envelope: ``{"logId", "errorCode": 0, "errorMsg": "Success",
"result"}``, or ``{"logId", "errorCode", "errorMsg"}`` with the HTTP status as ``errorCode``
on errors: 422 for a request the client must change (invalid JSON or field, bad base64, an
undecodable image or PDF, a limit exceeded, an unknown field), 401 without the bearer token,
413 for an oversized body, 503 while no tritonserver or model can answer, 500 only for faults.
Nothing blocks the event loop: decoding, PDF rendering and drawing run in its executor, and
tritonserver is called with the gRPC asyncio client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from fastapi import Request

from hpi_triton.errors import (
    HpiTritonError,
    InvalidRequestError,
    RequestFieldError,
    ServerFaultError,
    ServiceUnavailableError,
    URLRefusedError,
)
from hpi_triton.generator.plan import PipelineReport
from hpi_triton.paddlex_api import files
from hpi_triton.paddlex_api.pipelines import PipelineAPI, pipeline_api
from hpi_triton.paddlex_api.triton import TritonPool

log = logging.getLogger("hpi_triton.paddlex_api")

#: PaddleX's largest returned picture (``max_output_img_size``), width x height.
MAX_OUTPUT_IMAGE = (2000, 2000)
#: Result keys PaddleX's ``prune_result`` removes.
PRUNED_KEYS = ("input_path", "page_index")


@dataclass
class ApiSettings:
    """How the service runs.

    Attributes:
        triton_urls: gRPC ``HOST:PORT`` of the tritonservers (a name may resolve to several).
        repository: A local repository whose ``build_report.json`` says which graph serves
            which pipeline; without it, graphs named as their pipeline kind (``OCR``).
        models: Pipeline kind → served graph, over what the repository or discovery says.
        api_key: Bearer token every pipeline request must carry (None: no auth).
        limits: What a request's file may be.
        max_body_bytes: Largest request body.
        page_concurrency: Pages of one PDF in flight at once.
        visualize: PaddleX's ``Serving.visualize``: images when a request does not say.
    """

    triton_urls: List[str]
    repository: Optional[Path] = None
    models: Dict[str, str] = field(default_factory=dict)
    api_key: Optional[str] = None
    limits: files.FileLimits = field(default_factory=files.FileLimits)
    max_body_bytes: int = 140 * 1024 * 1024
    page_concurrency: int = 4
    visualize: bool = True


def served_pipelines(settings: ApiSettings, ready_models: List[str]) -> Dict[str, str]:
    """Pipeline kind → served graph: the repository's build report, else graphs named as
    their kind, then ``settings.models`` over both."""
    found: Dict[str, str] = {}
    report = settings.repository and Path(settings.repository) / "build_report.json"
    if report and report.is_file():
        for entry in json.loads(report.read_text()).get("pipelines", []):
            entry = PipelineReport.from_dict(entry)
            found.setdefault(entry.pipeline, entry.served_name)
    else:
        found.update({m: m for m in ready_models if pipeline_api(m) is not None})
    found.update(settings.models)
    return {kind: name for kind, name in found.items() if pipeline_api(kind) is not None}


def envelope_error(status: int, message: str, log_id: Optional[str] = None):
    """PaddleX's error response (``AIStudioNoResultResponse``) with HTTP ``status``."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"logId": log_id or str(uuid.uuid4()), "errorCode": status,
                         "errorMsg": message}, status_code=status)


def error_status(exc: Exception) -> int:
    """The HTTP status an error is answered with."""
    if isinstance(exc, InvalidRequestError):
        return 422
    if isinstance(exc, ServerFaultError):
        return 500
    if isinstance(exc, (ServiceUnavailableError, HpiTritonError)):
        return 503  # InferError: no answer from tritonserver, a retry may succeed
    return 500


def validation_message(exc) -> str:
    """A pydantic ValidationError as PaddleX writes it: a JSON list of {type, loc, msg}."""
    errors = []
    for error in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        errors.append({"type": error["type"], "loc": loc.lstrip("."), "msg": error["msg"]})
    return json.dumps(errors)


def prune(obj):
    """PaddleX's ``prune_result``: ``input_path`` / ``page_index`` removed at every depth."""
    if isinstance(obj, dict):
        return {k: prune(v) for k, v in obj.items() if k not in PRUNED_KEYS}
    if isinstance(obj, list):
        return [prune(v) for v in obj]
    return obj


def jpeg_base64(bgr: np.ndarray) -> str:
    """A BGR image as base64 JPEG, scaled into :data:`MAX_OUTPUT_IMAGE` as PaddleX does."""
    import cv2

    h, w = bgr.shape[:2]
    max_w, max_h = MAX_OUTPUT_IMAGE
    if w > max_w or h > max_h:
        factor = max_w / w if w / h > max_w / max_h else max_h / h
        bgr = cv2.resize(bgr, (int(factor * w), int(factor * h)))
    ok, data = cv2.imencode(".jpg", bgr)
    if not ok:
        raise ServerFaultError("the result picture could not be encoded as JPEG")
    return base64.b64encode(data.tobytes()).decode("ascii")


def pictures(api: PipelineAPI, image: np.ndarray, result: dict) -> Dict[str, str]:
    """PaddleX's result pictures: the input, and the result drawn by hpi_triton.visualize."""
    from hpi_triton.visualize import draw_result

    drawn = draw_result(np.ascontiguousarray(image[:, :, ::-1]), result)
    return {"inputImage": jpeg_base64(image),
            api.image_field: jpeg_base64(np.ascontiguousarray(drawn[:, :, ::-1]))}


class Service:
    """Answers one pipeline endpoint's requests (the parts independent of FastAPI)."""

    def __init__(self, settings: ApiSettings, pool: TritonPool):
        self.settings = settings
        self.pool = pool
        self.pipelines: Dict[str, str] = {}

    async def discover(self) -> None:
        """Which pipelines the servers hold (kept until found, retried per request)."""
        try:
            ready = await self.pool.models()
        except HpiTritonError:
            ready = []
        self.pipelines = served_pipelines(self.settings, ready)

    async def load(self, request, authorized: bool = True):
        """The request body as a dict, within the size limit; read whole before a refusal
        (a client still sending its body would see a reset, not the answer).

        Raises:
            Unauthorized: ``authorized`` is false.
            RequestFieldError: the body is not a JSON object.
            BodyTooLarge: the body is too large (answered 413).
        """
        declared = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
        if not authorized:
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer "
                               "<api key>)")
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestFieldError("body", f"is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise RequestFieldError("body", "must be a JSON object")
        return body

    async def images(self, request, visualize: bool = False) -> tuple:
        """(kind, the image or an open PDFDocument) of the request's ``file``: an image as
        :func:`files.prepare_image` gives it (decoded here only when ``visualize`` or the
        graph could not decode it as PaddleX does)."""
        limits = self.settings.limits
        loop = asyncio.get_running_loop()
        if files.is_url(request.file):
            data = await files.fetch_url(request.file, limits)
        else:
            data = files.decode_base64(request.file, limits)
        kind = files.file_kind(data, request.fileType)
        if kind == "IMAGE":
            return kind, await loop.run_in_executor(None, files.prepare_image, data,
                                                    limits.max_pixels, "file", visualize)
        return kind, await loop.run_in_executor(None, files.PDFDocument, data, limits)

    async def page(self, api: PipelineAPI, model: str, image, params: Dict,
                   visualize: bool) -> dict:
        """One page's entry of the results list."""
        result = await self.pool.predict(model, image, params)
        entry = dict(api.page_fields(result)) if api.page_fields else {}
        # Array outputs (label maps, images) are not part of PaddleX's prunedResult.
        pruned = prune({k: v for k, v in result.items() if not isinstance(v, np.ndarray)})
        entry["prunedResult"] = api.json_view(pruned) if api.json_view else pruned
        if visualize:
            drawn = await asyncio.get_running_loop().run_in_executor(
                None, pictures, api, image, result)
            picture = drawn[api.image_field]
            # table_recognition's pictures come as a dict (PaddleX: one per kind)
            entry[api.image_field] = {"result_img": picture} \
                if api.image_field == "outputImages" else picture
            entry["inputImage"] = drawn["inputImage"]
        return entry

    async def infer(self, api: PipelineAPI, body: dict) -> dict:
        """Answer one request body (already a dict); PaddleX's ``result``.

        Raises:
            HpiTritonError: as :func:`error_status` maps them.
        """
        from pydantic import ValidationError

        try:
            request = api.request_model.model_validate(body)
        except ValidationError as exc:
            raise RequestFieldError("body", validation_message(exc)) from None
        params = api.parameters(request)
        if api.kind not in self.pipelines:
            await self.discover()
        model = self.pipelines.get(api.kind)
        if model is None:
            raise ServiceUnavailableError(f"no {api.kind} pipeline is served behind this "
                                          f"service")
        visualize = self.settings.visualize if request.visualize is None else request.visualize
        if api.convert is not None:
            return await self._image(api, model, request, params, visualize)
        kind, source = await self.images(request, visualize)
        if kind == "IMAGE":
            entries = [await self.page(api, model, source, params, visualize)]
            sizes = [files.image_size(source)]
        else:
            entries, sizes = await self._pdf(api, model, source, params, visualize)
        return {api.results_key: entries, "dataInfo": files.data_info(kind, sizes)}

    async def _image(self, api, model, request, params, visualize) -> dict:
        """An image endpoint's ``result``: PaddleX's fields, and ``image`` (the result drawn)
        when visualizing."""
        limits = self.settings.limits
        if files.is_url(request.image):
            try:
                data = await files.fetch_url(request.image, limits)
            except URLRefusedError as exc:
                raise URLRefusedError("image", str(exc).split(": ", 1)[-1]) from None
        else:
            data = files.decode_base64(request.image, limits, "image")
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, files.prepare_image, data, limits.max_pixels,
                                           "image", visualize)
        result = await self.pool.predict(model, image, params)
        answer = api.convert(result)
        if visualize:
            drawn = await loop.run_in_executor(None, pictures, api, image, result)
            answer["image"] = drawn[api.image_field]
        return answer

    async def _pdf(self, api, model, document, params, visualize):
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.settings.page_concurrency)
        sizes: List = [None] * document.page_count

        async def one(index: int) -> dict:
            async with gate:
                image = await loop.run_in_executor(None, document.render, index)
                sizes[index] = (image.shape[1], image.shape[0])
                try:
                    return await self.page(api, model, image, params, visualize)
                except HpiTritonError as exc:
                    raise type(exc)(f"PDF page {index + 1}: {exc}") from exc

        tasks = [asyncio.ensure_future(one(i)) for i in range(document.page_count)]
        try:
            entries = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await loop.run_in_executor(None, document.close)
        return list(entries), sizes


class BodyTooLarge(InvalidRequestError):
    """The request body is above ``--max-body-bytes`` (answered 413)."""


class Unauthorized(InvalidRequestError):
    """The request lacks the ``--api-key`` bearer token (answered 401)."""


def create_app(settings: ApiSettings):
    """The FastAPI app for ``settings``: one POST endpoint per servable pipeline kind,
    ``GET /health``, OpenAPI at ``/docs``."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from hpi_triton.paddlex_api.pipelines import kinds

    pool = TritonPool(settings.triton_urls)
    service = Service(settings, pool)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.start()
        await service.discover()
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="hpi-triton: PaddleX serving API", lifespan=lifespan,
                  description="PaddleX 3.7.2's serving API, answered by pipeline graphs "
                              "in tritonserver.")
    app.state.service = service

    @app.get("/health", operation_id="checkHealth")
    async def health():
        if not pool.ready:
            return envelope_error(503, "no tritonserver behind this service is ready")
        if not service.pipelines:
            await service.discover()
        return {"logId": str(uuid.uuid4()), "errorCode": 0, "errorMsg": "Healthy"}

    def authorized(request: Request) -> bool:
        if not settings.api_key:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode())

    def route(api: PipelineAPI):
        async def infer(request: Request):
            log_id = None
            try:
                # Read before refusing: a client still sending its body would see a reset.
                body = await service.load(request, authorized(request))
                log_id = body.get("logId") if isinstance(body.get("logId"), str) else None
                result = await service.infer(api, body)
            except BodyTooLarge as exc:
                return envelope_error(413, str(exc), log_id)
            except Unauthorized as exc:
                return envelope_error(401, str(exc), log_id)
            except HpiTritonError as exc:
                status = error_status(exc)
                if status == 500:
                    log.error("%s: %s", api.endpoint, exc)
                return envelope_error(status, str(exc), log_id)
            except Exception:  # a fault of this service: logged, answered 500
                log.exception("%s failed", api.endpoint)
                return envelope_error(500, "Internal server error", log_id)
            return JSONResponse({"logId": log_id or str(uuid.uuid4()), "result": result,
                                 "errorCode": 0, "errorMsg": "Success"})

        schema = api.request_model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        app.post(api.endpoint, operation_id="infer" + api.kind.replace("_", ""),
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": schema}}}})(infer)

    for kind in kinds():
        route(pipeline_api(kind))
    return app


def run(settings: ApiSettings, host: str = "0.0.0.0", port: int = 8080) -> None:
    """Serve the app with uvicorn until SIGINT / SIGTERM."""
    import uvicorn

    # httptools (a dependency) parses requests in C; asyncio's own loop, not uvloop, since
    # grpc.aio's asyncio client is only supported on it.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                access_log=False, http="httptools", loop="asyncio")
