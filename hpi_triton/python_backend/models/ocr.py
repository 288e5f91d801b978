"""Triton Python-backend (BLS) model for the OCR pipeline (``model.py`` imports it).

Inputs (exactly one per request): ``image`` — encoded bytes as UINT8 [-1] (PNG, JPEG, BMP,
TIFF, WebP); ``image_array`` — decoded BGR HWC UINT8 (like cv2.imread). Output ``result``: one
JSON string with PaddleX's OCR result fields. Pipeline parameters (limit_side_len, thresh,
box_thresh, unclip_ratio, text_rec_score_thresh, use_textline_orientation, ...) may be set per
request as Triton request parameters. Detection, orientation and recognition are separate
Triton models called through BLS, each with its own instances and batching, or (``--hosting
graph``) engines this model runs in its own process.
"""


from ..common import bls
from ..engines import hosted
from ..ocr import ocr_pipeline


class TritonPythonModel:
    """Triton's entry point for the OCR pipeline graph."""

    def initialize(self, args):
        """Read the graph settings and characters; build the OCR flow over BLS engine calls."""
        settings, version_dir = bls.graph_settings(args)
        settings = ocr_pipeline.OCRSettings.from_json(settings)
        engine = hosted.engine_factory(args)
        self.flow = ocr_pipeline.OCRFlow.from_settings(
            settings, bls.read_characters(version_dir),
            lambda role: engine(settings.models[role]))

    def execute(self, requests):
        """Answer each request: licence check, then OCR of its image as the ``result`` JSON.

        A failing request gets its own error response; the others are answered.
        """
        return bls.serve_each(requests, self._handle)

    def _handle(self, request):
        bls.check_license()
        params = self.flow.parameters(bls.request_parameters(request))
        image = bls.read_image(request, params["max_pixels"])
        return bls.json_response(self.flow.run(image, params=params))
