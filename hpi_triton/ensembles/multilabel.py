"""image_multilabel_classification: one multi-label classifier (PP-LCNet_x1_0_ML, ...) as a
vision ensemble. Its served half is python_backend/vision/multilabel.py."""

from __future__ import annotations

from hpi_triton.ensembles.vision import ClassificationBuild, register_task
from hpi_triton.errors import InferenceConfigError


class MultiLabelClassificationBuild(ClassificationBuild):
    """What the build reads: the transform ops (as image classification), the label list and
    the threshold of inference.yml's ``PostProcess.MultiLabelThreshOutput``."""

    name = "image_multilabel_classification"
    paddlex_api = None  # PaddleX's endpoint for it not verified here: KServe v2 only
    summary = "every class above a score threshold (multi-label classification)"
    predict_params = ("threshold",)

    def settings(self, source, params):
        """Transform ops, label list and the threshold default from inference.yml."""
        fields, _ = super().settings(source, params)
        post = (source.config.get("PostProcess") or {}).get("MultiLabelThreshOutput") or {}
        threshold = post.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise InferenceConfigError(
                f"{source.path / 'inference.yml'}: field "
                f"'PostProcess.MultiLabelThreshOutput.threshold' is {threshold!r}; expected "
                f"one number in [0, 1] (per-class thresholds are not served)")
        fields["labels"] = post.get("label_list")
        # PaddleX 3.7.2's MLClasPredictor resizes, normalises and transposes: it never calls
        # the Crop its transform ops may declare, so neither does the served graph.
        fields["preprocess"] = [op for op in fields["preprocess"]
                                if not (isinstance(op, dict) and "CropImage" in op)]
        return fields, {"threshold": float(threshold)}


register_task(MultiLabelClassificationBuild())
