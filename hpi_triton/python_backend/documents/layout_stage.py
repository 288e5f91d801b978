"""Layout detection as a stage of the document flows (table, seal, layout_parsing, formula):
vision_ops' object detection over the LayoutDetection engine, and the parameters that switch
and tune it (the build half: ``ensembles/table.py:LayoutStage``)."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

from ..common.engine import Engine
from ..common.parameters import Parameter, ParameterSet
from ..vision import vision_ops

# The layout stage's parameters (the table, seal and formula pipelines take them as theirs).
PARAMETERS = ParameterSet.of(
    Parameter("use_layout_detection", bool, serving="useLayoutDetection",
              description="Find tables with LayoutDetection (default: on where built)"),
    Parameter("layout_threshold", float, 0.5, minimum=0, maximum=1, serving="layoutThreshold",
              description="LayoutDetection: regions are kept above this score"))


class LayoutStage:
    """Layout detection inside a document graph: vision_ops' object detection over the
    LayoutDetection engine.

    Args:
        settings: The detection settings the build wrote (``TableSettings.layout``).
        engine: The LayoutDetection engine.
    """

    def __init__(self, settings: Dict, engine: Engine):
        self.settings, self.engine = settings, engine

    def detect(self, image: np.ndarray, threshold: float) -> Dict:
        """``layout_det_res`` of ``image`` (BGR) at score ``threshold``."""
        return vision_ops.detect_layout(self.settings, image, threshold, self.engine)

    @staticmethod
    def boxes(layout: Dict, label: str) -> List:
        """The coordinates of ``layout``'s regions labelled ``label`` (any case)."""
        return [b["coordinate"] for b in layout["boxes"] if b["label"].lower() == label]


def built_stage(cls, settings: Optional[Dict], engine: Callable[[list], Engine]):
    """A stage (``cls(settings, engine)``: layout, table structure) from the settings the
    build wrote, over the engine their ``model`` spec names; None where not built."""
    return cls(settings, engine(settings["model"])) if settings is not None else None
