"""Pre-processing model of a vision pipeline ensemble (``model.py`` imports it).

First step of the generated ensemble ``<pipeline>`` → ``<pipeline>_preprocess`` (this) →
engine model → ``<pipeline>_postprocess``. Takes ``image`` (encoded bytes) or ``image_array``
(BGR HxWx3 uint8), checks the request parameters against the build's defaults, decodes and
applies the model's inference.yml pre-processing; returns the engine's inputs (``input_<i>``,
dtypes read from this model's config; a uint8 first input means the engine model normalises)
and ``context`` (JSON: source size, scale, the checked parameters) for the post-processing
step. A bad request fails alone with a clear message.
"""

import json

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from ..common import bls
from ..vision import vision_ops


class TritonPythonModel:
    """Triton's entry point for a vision ensemble's pre-processing step."""

    def initialize(self, args):
        """Read the pipeline settings and the engine inputs to produce, with their dtypes.

        A uint8 first input means the engine model normalises the pixels itself.
        """
        settings, _ = bls.graph_settings(args)
        self.settings = vision_ops.VisionSettings.from_json(settings)
        config = json.loads(args["model_config"])
        self.feeds = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"]))
                      for o in config["output"] if o["name"] != "context"]
        # An engine model that takes uint8 pixels normalises them itself (the build wrote
        # its config so); the image then leaves here as uint8 CHW.
        self.deferred = bool(self.feeds) and np.dtype(self.feeds[0][1]) == np.uint8

    def execute(self, requests):
        """Answer each request with its image pre-processed as engine inputs, plus ``context``.

        Checks the licence and the request's parameters, then decodes and pre-processes the image.
        A failing request gets its own error response; the others are answered.
        """
        return bls.serve_each(requests, self._handle)

    def _handle(self, request):
        bls.check_license()
        params = vision_ops.coerce_parameters(bls.request_parameters(request),
                                              self.settings.params)
        bgr = bls.read_image(request, params["max_pixels"])
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        feeds, context = vision_ops.preprocess(self.settings, params, rgb,
                                               self.deferred)
        context["params"] = params
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(feed, dtype=dtype))
                   for (name, dtype), feed in zip(self.feeds, feeds)]
        tensors.append(pb_utils.Tensor("context", np.array(
            [json.dumps(context).encode("utf-8")], dtype=np.object_)))
        return pb_utils.InferenceResponse(output_tensors=tensors)
