"""Which PaddleX 3.7.2 serving endpoint serves which pipeline graph, and its request schema.

A pipeline's request fields come from the graph's own parameter declarations (each
:class:`~hpi_triton.python_backend.common.parameters.Parameter` that PaddleX's serving request
sets names its field, e.g. in ``ocr_pipeline.PARAMETERS``): nothing here lists them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Type

from pydantic import BaseModel, ConfigDict, create_model
from typing_extensions import Literal

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


@dataclass
class PipelineAPI:
    """One PaddleX serving endpoint over one kind of served graph.

    Attributes:
        kind: The pipeline kind (``build_report.json``'s ``pipeline``).
        endpoint: PaddleX's path (``/ocr``).
        results_key: The list of per-page results in ``result`` (``ocrResults``).
        images: Result image name in the graph's picture → response field (``ocrImage``).
        fields: Request field → the graph's parameter it sets (its declaration).
        unsupported: PaddleX request fields accepted only at a value the graph gives
            (field → that value).
        derive: Adjusts the graph's request parameters mapped from ``fields`` (PaddleX
            semantics that tie parameters together).
        convert: For image endpoints (request field ``image``): the graph's result → PaddleX's
            ``result`` fields; None for document endpoints (``file``, per-page
            ``prunedResult``).
        page_fields: For document endpoints: the graph's result → fields every page entry
            has besides ``prunedResult`` (``outputImage``).
        json_view: For document endpoints: the graph's result → what PaddleX's result
            ``.json`` shows of it (fields its JSON leaves out).
    """

    kind: str
    endpoint: str
    results_key: str
    image_field: str
    fields: Dict[str, Parameter]
    unsupported: Dict[str, object] = field(default_factory=dict)
    derive: Optional[Callable[[Dict], Dict]] = None
    convert: Optional[Callable[[Dict], Dict]] = None
    page_fields: Optional[Callable[[Dict], Dict]] = None
    json_view: Optional[Callable[[Dict], Dict]] = None
    _model: Optional[Type[BaseModel]] = None

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


def _doc_switches(params: Dict) -> Dict:
    """PaddleX's document pipelines' semantics (``get_model_settings``): naming either doc
    preprocessing switch turns the doc preprocessor on when one of them is true, off
    otherwise."""
    switches = [params[k] for k in ("use_doc_orientation_classify", "use_doc_unwarping")
                if k in params]
    if switches:
        params["use_doc_preprocessor"] = any(switches)
    return params


def _ocr() -> PipelineAPI:
    from hpi_triton.python_backend.ocr import ocr_pipeline

    return PipelineAPI("OCR", "/ocr", "ocrResults", "ocrImage",
                       ocr_pipeline.PARAMETERS.serving_fields(), {"returnWordBox": False},
                       _doc_switches)


def _table_json(result: Dict) -> Dict:
    """PaddleX's table results show ``cell_box_list``, ``pred_html`` and ``table_ocr_pred``
    in JSON (SingleTableRecognitionResult._to_json), not ``table_region_id``."""
    tables = [{k: v for k, v in t.items() if k != "table_region_id"}
              for t in result.get("table_res_list", [])]
    return dict(result, table_res_list=tables)


def _table() -> PipelineAPI:
    from hpi_triton.python_backend.documents import table_pipeline
    from hpi_triton.python_backend.ocr import ocr_pipeline

    # useTextlineOrientation and layoutThreshold are not fields of PaddleX's table request
    fields = (ocr_pipeline.PARAMETERS.without("use_textline_orientation")
              | table_pipeline.PARAMETERS.without("layout_threshold")).serving_fields()
    return PipelineAPI("table_recognition", "/table-recognition", "tableRecResults",
                       "outputImages", fields,
                       {"useOcrModel": True, "useOcrResultsWithTableCells": False},
                       _doc_switches, json_view=_table_json)


def _categories(result: Dict) -> Dict:
    """image_classification → PaddleX's ``categories`` (id, name, score)."""
    ids = result.get("class_ids") or []
    names = result.get("label_names") or [str(i) for i in ids]
    return {"categories": [{"id": int(i), "name": n, "score": float(s)}
                           for i, n, s in zip(ids, names, result.get("scores") or [])]}


def _objects(result: Dict) -> Dict:
    """object_detection → PaddleX's ``detectedObjects`` (bbox, categoryId, categoryName,
    score)."""
    return {"detectedObjects": [{"bbox": box["coordinate"], "categoryId": int(box["cls_id"]),
                                 "categoryName": box["label"], "score": float(box["score"])}
                                for box in result.get("boxes") or []]}


def _label_map(result: Dict) -> Dict:
    """semantic_segmentation → PaddleX's ``labelMap`` (row-major labels) and ``size``
    ([height, width])."""
    import numpy as np

    pred = np.asarray(result["pred"])
    pred = pred.reshape(pred.shape[-2:])
    return {"labelMap": pred.reshape(-1).tolist(), "size": [int(pred.shape[0]),
                                                           int(pred.shape[1])]}


def coco_rle(mask) -> str:
    """A binary mask as COCO's compressed RLE string (``pycocotools.mask.encode``'s
    ``counts``): column-major runs starting with zeros, each the difference to the run two
    before (from the third), in 5-bit groups offset by 48."""
    import numpy as np

    flat = (np.asarray(mask).reshape(np.asarray(mask).shape[:2]) != 0).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def _instances(result: Dict) -> Dict:
    """instance_segmentation → PaddleX's ``instances``: each box with its mask cropped to the
    box (PaddleX 3.7's masks are; ``int(round())`` of the coordinates) as COCO RLE."""
    import numpy as np

    masks = np.asarray(result.get("masks", np.zeros((0, 0, 0), np.uint8)))
    instances = []
    for box, mask in zip(result.get("boxes") or [], masks):
        x1, y1, x2, y2 = (int(round(v)) for v in box["coordinate"])
        crop = mask[y1:y2, x1:x2]
        instances.append({"bbox": box["coordinate"], "categoryId": int(box["cls_id"]),
                          "categoryName": box["label"], "score": float(box["score"]),
                          "mask": {"rleResult": coco_rle(crop),
                                   "size": [int(crop.shape[0]), int(crop.shape[1])]}})
    return {"instances": instances}


def _vision(kind: str, endpoint: str, convert: Callable[[Dict], Dict]) -> Callable:
    def factory() -> PipelineAPI:
        from hpi_triton.python_backend.vision import vision_ops

        task = vision_ops.TASKS[kind]
        return PipelineAPI(kind, endpoint, "", "image", task.parameters.serving_fields(),
                           convert=convert)

    return factory


def _output_image(result: Dict) -> Dict:
    """doc_preprocessor's corrected page as PaddleX's ``outputImage`` (base64 PNG, scaled
    into 2000 x 2000 as PaddleX does)."""
    import base64

    import cv2
    import numpy as np

    png = np.asarray(result["output_img"], np.uint8).tobytes()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    if w > 2000 or h > 2000:
        factor = 2000 / w if w / h > 1 else 2000 / h
        png = cv2.imencode(".png", cv2.resize(image, (int(factor * w), int(factor * h))))[1]
    return {"outputImage": base64.b64encode(bytes(png)).decode("ascii")}


def _doc_preprocessor() -> PipelineAPI:
    from hpi_triton.python_backend.doc_preprocessor import doc_ops

    return PipelineAPI("doc_preprocessor", "/document-preprocessing",
                       "docPreprocessingResults", "docPreprocessingImage",
                       doc_ops.PARAMETERS.serving_fields(), page_fields=_output_image)


def _seal_json(result: Dict) -> Dict:
    """PaddleX's seal result JSON (SealRecognitionResult._to_json): ``doc_preprocessor_res``
    only when the doc preprocessor ran, ``layout_det_res`` only when layout detection did,
    each seal as its OCR result's JSON (no ``seal_region_id``)."""
    out = {k: v for k, v in result.items()
           if k not in ("doc_preprocessor_res", "layout_det_res") or v}
    out["seal_res_list"] = [{k: v for k, v in seal.items() if k != "seal_region_id"}
                            for seal in result.get("seal_res_list", [])]
    return out


def _seal() -> PipelineAPI:
    from hpi_triton.python_backend.documents import table_pipeline
    from hpi_triton.python_backend.ocr import ocr_pipeline

    fields = (ocr_pipeline.PARAMETERS.only("use_doc_orientation_classify", "use_doc_unwarping")
              | table_pipeline.PARAMETERS | table_pipeline.SEAL_PARAMETERS).serving_fields()
    return PipelineAPI("seal_recognition", "/seal-recognition", "sealRecResults",
                       "outputImages", fields, derive=_doc_switches, json_view=_seal_json)


def _formula_json(result: Dict) -> Dict:
    """PaddleX's formula result JSON: no ``warnings`` (ours name regions that decoded to
    nothing)."""
    return {k: v for k, v in result.items() if k != "warnings"}


def _formula() -> PipelineAPI:
    from hpi_triton.python_backend.documents import formula_ops

    fields = formula_ops.REQUEST_PARAMETERS.serving_fields()
    return PipelineAPI("formula_recognition", "/formula-recognition", "formulaRecResults",
                       "outputImages", fields, json_view=_formula_json)


def _layout_json(result: Dict) -> Dict:
    """PaddleX's layout_parsing result JSON (LayoutParsingResult._to_json):
    ``doc_preprocessor_res`` only when it ran; table / seal / formula lists only when on and
    not empty, each item as its own JSON shows it; no ``warnings``."""
    settings = result.get("model_settings") or {}
    out = {k: v for k, v in result.items() if k not in (
        "warnings", "doc_preprocessor_res", "table_res_list", "seal_res_list",
        "formula_res_list")}
    if settings.get("use_doc_preprocessor"):
        out["doc_preprocessor_res"] = result.get("doc_preprocessor_res")
    for key, switch, drop in (("table_res_list", "use_table_recognition", "table_region_id"),
                              ("seal_res_list", "use_seal_recognition", "seal_region_id"),
                              ("formula_res_list", "use_formula_recognition", None)):
        items = result.get(key) or []
        if settings.get(switch) and items:
            out[key] = [{k: v for k, v in item.items() if k != drop} for item in items]
    return out


def _layout_parsing() -> PipelineAPI:
    from hpi_triton.python_backend.documents import table_pipeline
    from hpi_triton.python_backend.ocr import ocr_pipeline

    fields = (ocr_pipeline.PARAMETERS | table_pipeline.LAYOUT_PARSING_SWITCHES
              | table_pipeline.PARAMETERS.only("layout_threshold")
              | table_pipeline.SEAL_PARAMETERS).serving_fields()
    return PipelineAPI("layout_parsing", "/layout-parsing", "layoutParsingResults",
                       "outputImages", fields, {"useTableRecognition": True},
                       _doc_switches, json_view=_layout_json)


#: Pipeline kind → its endpoint (the kinds whose graphs this service speaks PaddleX for).
FACTORIES: Dict[str, Callable[[], PipelineAPI]] = {
    "OCR": _ocr,
    "doc_preprocessor": _doc_preprocessor,
    "table_recognition": _table,
    "seal_recognition": _seal,
    "formula_recognition": _formula,
    "layout_parsing": _layout_parsing,
    "image_classification": _vision("image_classification", "/image-classification",
                                    _categories),
    "object_detection": _vision("object_detection", "/object-detection", _objects),
    "semantic_segmentation": _vision("semantic_segmentation", "/semantic-segmentation",
                                     _label_map),
    "instance_segmentation": _vision("instance_segmentation", "/instance-segmentation",
                                     _instances),
}


def pipeline_api(kind: str) -> Optional[PipelineAPI]:
    """The endpoint for served graphs of ``kind``, or None where the API has none yet."""
    factory = FACTORIES.get(kind)
    return factory() if factory is not None else None
