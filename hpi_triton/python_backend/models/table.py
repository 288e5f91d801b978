"""Triton Python-backend (BLS) graph for PaddleX's table_recognition, seal_recognition and
layout_parsing (``model.py`` imports it; ``task`` in the settings names the flow).

Inputs as the other graphs (``image`` encoded bytes or ``image_array`` BGR HxWx3); output
``result``: one JSON string with PaddleX's fields (``table_res_list`` with ``pred_html``,
``cell_box_list``, ``table_ocr_pred`` per table; ``overall_ocr_res``; ...). Per-request
parameters: the OCR ones (seal_det_* / seal_rec_score_thresh for seal OCR),
use_doc_preprocessor (+ its switches), use_layout_detection, layout_threshold,
use_seal_recognition.
"""


from ..common import bls
from ..documents import table_pipeline
from ..engines import hosted


class TritonPythonModel:
    """Triton's entry point for the table_recognition, seal_recognition, layout_parsing graphs."""

    def initialize(self, args):
        """Build the flow that the settings' ``task`` names, its stages over BLS calls to the
        engine models the build included."""
        settings, version_dir = bls.graph_settings(args)
        self.flow = table_pipeline.flow_from_settings(
            settings, lambda name: bls.read_text(version_dir, name),
            hosted.engine_factory(args))

    def execute(self, requests):
        """Answer each request: licence check, then the task's flow on its image as ``result``.

        A failing request gets its own error response; the others are answered.
        """
        return bls.serve_each(requests, self._handle)

    def _handle(self, request):
        bls.check_license()
        table, ocr = self.flow.parameters(bls.request_parameters(request))
        image = bls.read_image(request, ocr["max_pixels"])
        return bls.json_response(self.flow.run(image, table, ocr))
