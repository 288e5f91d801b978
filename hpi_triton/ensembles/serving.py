"""What a pipeline declares of the PaddleX serving API it answers: its endpoint, result
fields and the conversions from its graph's result (PaddleX 3.7.2's ``paddlex --serve``
schemas). The service (``hpi_triton.paddlex_api``) reads each pipeline's declaration from the
registry; nothing there names a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from hpi_triton.python_backend.common.parameters import ParameterSet


@dataclass(frozen=True)
class PaddleXEndpoint:
    """One PaddleX serving endpoint over a pipeline's served graph.

    Attributes:
        path: PaddleX's path (``/ocr``).
        results_key: The list of per-page results in ``result`` (``ocrResults``); empty for
            image endpoints (one result, no pages).
        image_field: Result image name in the graph's picture → response field
            (``ocrImage``).
        parameters: The graph's parameters PaddleX's request sets, each naming its request
            field (``Parameter.serving``).
        unsupported: PaddleX request fields accepted only at a value the graph gives
            (field → that value).
        derive: Adjusts the graph's request parameters mapped from the fields (PaddleX
            semantics that tie parameters together, e.g. :func:`doc_switches`).
        convert: For image endpoints (request field ``image``): the graph's result →
            PaddleX's ``result`` fields; None for document endpoints (``file``, per-page
            ``prunedResult``).
        page_fields: For document endpoints: the graph's result → fields every page entry
            has besides ``prunedResult`` (``outputImage``).
        json_view: For document endpoints: the graph's result → what PaddleX's result
            ``.json`` shows of it (fields its JSON leaves out).
    """

    path: str
    results_key: str
    image_field: str
    parameters: ParameterSet
    unsupported: Dict[str, object] = field(default_factory=dict)
    derive: Optional[Callable[[Dict], Dict]] = None
    convert: Optional[Callable[[Dict], Dict]] = None
    page_fields: Optional[Callable[[Dict], Dict]] = None
    json_view: Optional[Callable[[Dict], Dict]] = None


def doc_switches(params: Dict) -> Dict:
    """PaddleX's document pipelines' semantics (``get_model_settings``): naming either doc
    preprocessing switch turns the doc preprocessor on when one of them is true, off
    otherwise."""
    switches = [params[k] for k in ("use_doc_orientation_classify", "use_doc_unwarping")
                if k in params]
    if switches:
        params["use_doc_preprocessor"] = any(switches)
    return params
