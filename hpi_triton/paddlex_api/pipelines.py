"""Which PaddleX 3.7.2 serving endpoint serves which pipeline graph, and its request schema.

Each pipeline declares its endpoint (``PipelineKind.paddlex_endpoint``, a
:class:`~hpi_triton.ensembles.serving.PaddleXEndpoint`) in its own module; its request fields
come from the graph's own parameter declarations (each
:class:`~hpi_triton.python_backend.common.parameters.Parameter` that PaddleX's serving request
sets names its field). Nothing here lists pipelines or fields again.
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple, Type

from pydantic import BaseModel, ConfigDict, create_model
from typing_extensions import Literal

from hpi_triton.ensembles.serving import PaddleXEndpoint
from hpi_triton.errors import RequestFieldError
from hpi_triton.python_backend.common.parameters import Parameter


class BaseRequest(BaseModel):
    """The fields of PaddleX's document pipelines' requests (``schemas/shared/ocr.py``);
    unknown fields are refused (PaddleX ignores them silently)."""

    model_config = ConfigDict(extra="forbid")

    file: str
    fileType: Optional[Literal[0, 1]] = None
    visualize: Optional[bool] = None
    logId: Optional[str] = None


class ImageRequest(BaseModel):
    """The fields of PaddleX's vision pipelines' requests (``schemas/image_classification.py``
    and alike): one ``image``, base64 or URL."""

    model_config = ConfigDict(extra="forbid")

    image: str
    visualize: Optional[bool] = None
    logId: Optional[str] = None


class PipelineAPI:
    """One PaddleX serving endpoint over one kind of served graph: what the pipeline
    declares (:class:`~hpi_triton.ensembles.serving.PaddleXEndpoint`: ``results_key``,
    ``image_field``, ``unsupported``, ``derive``, ``convert``, ``page_fields``,
    ``json_view`` read through), with its request schema.

    Args:
        kind: The pipeline kind (``build_report.json``'s ``pipeline``).
        declared: The pipeline's endpoint declaration.
    """

    def __init__(self, kind: str, declared: PaddleXEndpoint):
        self.kind, self.declared = kind, declared
        #: PaddleX's path (``/ocr``).
        self.endpoint = declared.path
        #: Request field → the graph's parameter it sets (its declaration).
        self.fields: Dict[str, Parameter] = declared.parameters.serving_fields()
        self._model: Optional[Type[BaseModel]] = None

    def __getattr__(self, name: str):
        # the declaration's facts (results_key, convert, ...), read where they are declared
        if name == "declared":
            raise AttributeError(name)
        return getattr(self.declared, name)

    @property
    def request_model(self) -> Type[BaseModel]:
        """The pydantic model of this endpoint's request body."""
        if self._model is None:
            extra = {name: (Optional[spec.kind], None) for name, spec in self.fields.items()}
            extra.update({name: (Optional[type(value)], None)
                          for name, value in self.unsupported.items()})
            base = BaseRequest if self.convert is None else ImageRequest
            self._model = create_model(f"{self.kind}Request", __base__=base, **extra)
        return self._model

    def parameters(self, request: BaseModel) -> Dict[str, object]:
        """The graph's request parameters for ``request`` (fields left out or null are not
        sent: the build's defaults apply, as PaddleX's config defaults do).

        Raises:
            RequestFieldError: a value is out of the graph's range, or an unsupported field
                asks for another value than the graph's.
        """
        given = {name: getattr(request, name) for name in self.fields
                 if getattr(request, name) is not None}
        for name, value in given.items():
            if not self.fields[name].accepts(value):
                raise RequestFieldError(name, f"{value!r} is out of range; expected "
                                              f"{self.fields[name].expected()}")
        for name, value in self.unsupported.items():
            asked = getattr(request, name)
            if asked is not None and asked != value:
                raise RequestFieldError(name, f"{asked!r} is not supported by this service "
                                              f"(only {value!r})")
        params = {self.fields[name].name: value for name, value in given.items()}
        return self.derive(params) if self.derive is not None else params


@functools.cache
def _apis() -> Dict[str, PipelineAPI]:
    """Pipeline kind → its endpoint, for every registered pipeline that declares one."""
    from hpi_triton.ensembles import registry

    found = {}
    for kind, cls in registry.kinds().items():
        endpoint = cls.paddlex_endpoint
        if endpoint is not None:
            found[kind] = PipelineAPI(kind, endpoint)
    return found


def kinds() -> Tuple[str, ...]:
    """The pipeline kinds this service speaks PaddleX's API for."""
    return tuple(_apis())


def pipeline_api(kind: str) -> Optional[PipelineAPI]:
    """The endpoint for served graphs of ``kind``, or None where the API has none."""
    return _apis().get(kind)
