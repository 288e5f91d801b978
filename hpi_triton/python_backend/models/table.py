"""Triton Python-backend (BLS) graph for PaddleX's table_recognition, seal_recognition and
layout_parsing (``model.py`` imports it; ``task`` in the settings says which).

Inputs as the other graphs (``image`` encoded bytes or ``image_array`` BGR HxWx3); output
``result``: one JSON string with PaddleX's fields (``table_res_list`` with ``pred_html``,
``cell_box_list``, ``table_ocr_pred`` per table; ``overall_ocr_res``; ...). Per-request
parameters: the OCR ones (seal_det_* / seal_rec_score_thresh for seal OCR),
use_doc_preprocessor (+ its switches), use_layout_detection, layout_threshold,
use_seal_recognition.
"""


from ..common import bls
from ..documents import formula_ops, table_pipeline
from ..ocr import ocr_pipeline


class TritonPythonModel:
    """Triton's entry point for the table_recognition, seal_recognition, layout_parsing graphs."""

    def initialize(self, args):
        """Build the flow that the settings' ``task`` names, over BLS calls to its engine models.

        The OCR models always; the table-structure, layout and (layout_parsing) seal OCR models
        where the build included them.
        """
        settings, version_dir = bls.graph_settings(args)
        settings = table_pipeline.TableSettings.from_json(settings)
        characters = bls.read_characters(version_dir)
        calls = {role: bls.EngineCall(*spec) for role, spec in settings.ocr["models"].items()}
        ocr = ocr_pipeline.OCRFlow.from_settings(settings.ocr, characters,
                                                 lambda role: calls[role])
        structure = (bls.EngineCall(*settings.structure["model"]).run
                     if settings.structure is not None else None)
        layout = (bls.EngineCall(*settings.layout["model"]).run
                  if settings.layout is not None else None)
        task = settings.task
        if task == "layout_parsing":
            seal = None
            if settings.seal_ocr is not None:
                seal_calls = {role: bls.EngineCall(*spec)
                              for role, spec in settings.seal_ocr["models"].items()}
                seal = ocr_pipeline.OCRFlow.from_settings(
                    settings.seal_ocr, bls.read_characters(version_dir, "seal_characters.txt"),
                    lambda role: seal_calls[role])
            formula = None
            if settings.formula is not None:
                formula = formula_ops.FormulaFlow.from_settings(
                    {"formula": settings.formula},
                    bls.read_text(version_dir, settings.formula["tokenizer_file"]),
                    lambda spec: bls.EngineCall(*spec).run)
            self.flow = table_pipeline.LayoutParsingFlow(settings, ocr, structure, layout, seal,
                                                         formula)
        elif task == "seal_recognition":
            self.flow = table_pipeline.SealFlow(settings, ocr, structure, layout)
        else:
            self.flow = table_pipeline.TableFlow(settings, ocr, structure, layout)

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
