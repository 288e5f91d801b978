"""Triton Python-backend (BLS) graph for PaddleX's formula_recognition (``model.py`` imports
it).

Inputs as the other graphs (``image`` encoded bytes or ``image_array`` BGR HxWx3); output
``result``: one JSON string with PaddleX's fields (``formula_res_list`` with ``rec_formula``,
``formula_region_id``, ``dt_polys``; ``model_settings``; ``layout_det_res`` /
``doc_preprocessor_res`` when those steps ran; ``warnings`` naming regions that decoded to
nothing or hit the decoding limit). Per-request parameters: use_layout_detection,
layout_threshold, use_doc_orientation_classify, use_doc_unwarping, max_pixels.
"""

from ..common import bls
from ..documents import formula_ops
from ..engines import hosted


class TritonPythonModel:
    """Triton's entry point for the formula_recognition graph."""

    def initialize(self, args):
        """Read the settings and the tokenizer; build the flow over BLS engine calls."""
        settings, version_dir = bls.graph_settings(args)
        settings = formula_ops.FormulaSettings.from_json(settings)
        self.flow = formula_ops.FormulaFlow.from_settings(
            settings, bls.read_text(version_dir, settings.formula["tokenizer_file"]),
            hosted.engine_factory(args))

    def execute(self, requests):
        """Answer each request: licence check, then the flow on its image as ``result``.

        A failing request gets its own error response; the others are answered.
        """
        return bls.serve_each(requests, self._handle)

    def _handle(self, request):
        bls.check_license()
        params = self.flow.parameters(bls.request_parameters(request))
        image = bls.read_image(request, params["max_pixels"])
        return bls.json_response(self.flow.run(image, params))
