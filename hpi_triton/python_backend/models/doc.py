"""Triton Python-backend (BLS) graph for PaddleX's doc_preprocessor (``model.py`` imports it).

Inputs as the other graphs (``image`` encoded bytes or ``image_array`` BGR HxWx3). Outputs:
``result`` (JSON: ``angle``, ``model_settings``) and ``output_img``, the corrected image as PNG
bytes. Per-request parameters: use_doc_orientation_classify, use_doc_unwarping, max_pixels.
"""


import cv2
import numpy as np

from ..common import bls
from ..common.image_io import MAX_PIXELS
from ..common.parameters import ParameterSet
from ..doc_preprocessor import doc_ops
from ..engines import hosted

PARAMETERS = doc_ops.PARAMETERS | ParameterSet.of(MAX_PIXELS)


class TritonPythonModel:
    """Triton's entry point for the doc_preprocessor graph."""

    def initialize(self, args):
        """Read the graph settings and build the doc_preprocessor flow over its BLS engine calls."""
        settings, _ = bls.graph_settings(args)
        self.settings = settings = doc_ops.DocGraphSettings.from_json(settings)
        engine = hosted.engine_factory(args)
        engines = {role: engine(spec) for role, spec in settings.models.items()}
        self.flow = doc_ops.DocPreprocessFlow(settings.doc,
                                              engines.get("DocOrientationClassify"),
                                              engines.get("DocUnwarping"))

    def execute(self, requests):
        """Answer each request: licence check, then ``result`` and the corrected ``output_img``.

        A failing request gets its own error response; the others are answered.
        """
        return bls.serve_each(requests, self._handle)

    def _handle(self, request):
        bls.check_license()
        params = PARAMETERS.coerce(bls.request_parameters(request), self.settings.params)
        image = bls.read_image(request, params["max_pixels"])
        output, result = self.flow.run(image, params)
        ok, png = cv2.imencode(".png", output)
        if not ok:
            raise RuntimeError("the corrected image could not be PNG-encoded")
        result["output_img"] = np.asarray(png, np.uint8).reshape(-1)
        return bls.json_response(result, ("output_img",))
