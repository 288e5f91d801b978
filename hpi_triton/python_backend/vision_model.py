"""Triton Python-backend (BLS) graph for the vision pipelines (copied as ``model.py``).

Same inputs as the OCR graph (``image`` encoded bytes or ``image_array`` BGR HxWx3), output
``result`` as one JSON string with PaddleX's result fields. Pre-processing (from the model's
inference.yml) → the separately served engine model (BLS) → post-processing.
"""

import os
import sys

import cv2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bls  # noqa: E402
import vision_ops  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.settings, _ = bls.graph_settings(args)
        self.engine = bls.EngineCall(*self.settings["model"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:  # every failure is this request's alone
                bls.check_license()
                params = vision_ops.coerce_parameters(bls.request_parameters(request),
                                                      self.settings["params"])
                bgr = bls.read_image(request, params["max_pixels"])
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                result = vision_ops.run_task(self.settings, params, rgb, self.engine.run)
                responses.append(bls.json_response(result, self.settings.get("arrays", ())))
            except Exception as exc:
                responses.append(bls.error_response(exc))
        return responses
