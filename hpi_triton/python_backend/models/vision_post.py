"""Post-processing model of a vision pipeline ensemble (``model.py`` imports it).

Last step of the generated ensemble: the engine's outputs (``output_<i>``) and the
pre-processing step's ``context`` → ``result`` (one JSON string with PaddleX's result fields)
plus, for segmentation, the label map / masks as their own tensors.
"""

import json

import triton_python_backend_utils as pb_utils

from ..common import bls
from ..vision import vision_ops


class TritonPythonModel:
    """Triton's entry point for a vision ensemble's post-processing step."""

    def initialize(self, args):
        """Read the pipeline settings, the names of the engine outputs this step takes and
        the result entries served as their own tensors (the task's array outputs)."""
        settings, _ = bls.graph_settings(args)
        self.settings = vision_ops.VisionSettings.from_json(settings)
        self.arrays = tuple(vision_ops.task(self.settings.task).array_outputs)
        config = json.loads(args["model_config"])
        self.engine_outputs = [i["name"] for i in config["input"] if i["name"] != "context"]

    def execute(self, requests):
        """Turn each request's engine outputs and ``context`` into the ``result`` JSON.

        Segmentation label maps and masks go out as their own tensors. A failing request gets its
        own error response; the others are answered.
        """
        return bls.serve_each(requests, self._handle)

    def _handle(self, request):
        context = json.loads(
            pb_utils.get_input_tensor_by_name(request, "context").as_numpy()
            .reshape(-1)[0])
        outputs = [pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                   for name in self.engine_outputs]
        result = vision_ops.postprocess(self.settings, context["params"], outputs,
                                        context)
        return bls.json_response(result, self.arrays)
