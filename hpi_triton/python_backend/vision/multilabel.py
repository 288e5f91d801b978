"""PaddleX image_multilabel_classification, served: image classification's pre-processing, then
every class scoring above the threshold, highest first (PaddleX 3.7.2's
MultiLabelThreshOutput). Found by vision_ops at import; its build half is
hpi_triton/ensembles/multilabel.py."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from . import vision_ops


def above_threshold(probs: np.ndarray, threshold: float, labels: Sequence[str] | None) -> Dict:
    """PaddleX's MultiLabelThreshOutput for one image: the classes scoring above
    ``threshold`` (strictly), highest first; scores to 5 decimals."""
    kept = probs > threshold
    index = np.where(kept)[0][np.argsort(-probs[kept])].astype(int)
    # PaddleX rounds these as float64 (Topk rounds float32): the 5th decimal can differ
    return vision_ops.classes(index, np.around(probs[index].astype(float), decimals=5),
                              labels)


class ImageMultiLabelClassification(vision_ops.ImageClassification):
    """Classification's pre-processing (uint8 pixels to the engine where it can normalise),
    scores → the classes above the threshold."""

    name, role = "image_multilabel_classification", "ImageMultiLabelClassification"
    parameters = vision_ops.ParameterSet.of(vision_ops.Parameter(
        "threshold", float, minimum=0, maximum=1, serving="threshold",
        description="Classes scoring above this are returned (default: inference.yml's "
                    "MultiLabelThreshOutput threshold)"))

    def postprocess(self, settings, params, outputs, context):
        """Scores → class_ids, scores and label_names above the threshold."""
        return above_threshold(np.asarray(outputs[0])[0], params["threshold"], settings.labels)


vision_ops.register_task(ImageMultiLabelClassification())
