"""Triton Python-backend (BLS) model for the OCR pipeline (copied as ``model.py``).

Inputs (exactly one per request): ``image`` — encoded bytes as UINT8 [-1] (PNG, JPEG, BMP,
TIFF, WebP); ``image_array`` — decoded BGR HWC UINT8 (like cv2.imread). Output ``result``: one
JSON string with PaddleX's OCR result fields. Pipeline parameters (limit_side_len, thresh,
box_thresh, unclip_ratio, text_rec_score_thresh, use_textline_orientation, ...) may be set per
request as Triton request parameters. Detection, orientation and recognition are separate
Triton models called through BLS, so each has its own instances and batching.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ocr_ops  # noqa: E402
import ocr_pipeline  # noqa: E402


class _EngineCall:
    """A BLS call to one served engine model: float32 batch in, its first output out."""

    def __init__(self, model, input_name, output_name):
        self.model, self.input_name, self.output_name = model, input_name, output_name

    def __call__(self, batch):
        request = pb_utils.InferenceRequest(
            model_name=self.model, requested_output_names=[self.output_name],
            inputs=[pb_utils.Tensor(self.input_name, np.ascontiguousarray(batch, np.float32))])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"model '{self.model}': {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, self.output_name).as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        settings = json.loads(params["pipeline_settings"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(version_dir, "characters.txt"), encoding="utf-8") as handle:
            characters = handle.read().split("\n")
        roles = settings["models"]
        det = _EngineCall(*roles["TextDetection"])
        rec = _EngineCall(*roles["TextRecognition"])
        cls = _EngineCall(*roles["TextLineOrientation"]) if "TextLineOrientation" in roles \
            else None
        self.flow = ocr_pipeline.OCRFlow(settings, characters, det, rec, cls)

    def _image(self, request, max_pixels):
        encoded = pb_utils.get_input_tensor_by_name(request, "image")
        decoded = pb_utils.get_input_tensor_by_name(request, "image_array")
        if (encoded is None) == (decoded is None):
            raise ocr_ops.ImageError("send exactly one of 'image' (encoded bytes, UINT8 [-1]) "
                                     "and 'image_array' (BGR HxWx3 UINT8)")
        if encoded is not None:
            return ocr_ops.decode_image(encoded.as_numpy().reshape(-1), max_pixels)
        return ocr_ops.normalize_array(decoded.as_numpy(), max_pixels)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                overrides = json.loads(request.parameters() or "{}")
                params = self.flow.parameters(overrides)
                image = self._image(request, params["max_pixels"])
                result = self.flow.run(image, params=params)
                out = np.array([ocr_pipeline.dumps(result).encode("utf-8")], dtype=np.object_)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("result", out)]))
            except Exception as exc:  # every failure is this request's alone
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[],
                    error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
