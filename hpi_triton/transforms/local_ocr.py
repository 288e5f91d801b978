"""A built repository's OCR graph run in this process: the graph's own flow over the
repository's own engine artifacts, without Triton in between.

The int8 gate (:mod:`.quantize`) and bench/ use it to read pages the way the served graph
reads them, with engines they swap per role (a quantized candidate, a recorder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from hpi_triton.python_backend import engines
from hpi_triton.python_backend.ocr import ocr_pipeline
from hpi_triton.triton_models.config import read_pbtxt

Infer = Callable[[np.ndarray], np.ndarray]


@dataclass
class LocalOCR:
    """The OCR part of one pipeline graph of a repository (OCR itself, or the OCR a table /
    layout pipeline runs)."""

    repo: Path
    served_name: str
    settings: ocr_pipeline.OCRSettings
    characters: List[str]
    #: Engine models the graph's seal OCR calls (layout_parsing's may share the general
    #: recognizer).
    seal_models: List[str] = field(default_factory=list)

    @classmethod
    def load(cls, repo: Path, served_name: str) -> Optional[LocalOCR]:
        """The OCR flow of graph ``served_name`` in ``repo``, or None if it has none."""
        config = read_pbtxt(Path(repo) / served_name / "config.pbtxt")
        if "pipeline_settings" not in config.parameters:
            return None
        graph = json.loads(config.parameters["pipeline_settings"].string_value)
        settings = graph.get("ocr", graph)
        models = settings.get("models") or {}
        chars = Path(repo) / served_name / "1" / "characters.txt"
        if "TextDetection" not in models or "TextRecognition" not in models or not chars.is_file():
            return None
        seal = (graph.get("seal_ocr") or {}).get("models") or {}
        return cls(Path(repo), served_name, ocr_pipeline.OCRSettings.from_json(settings),
                   chars.read_text(encoding="utf-8").split("\n"),
                   [entry[0] for entry in seal.values()])

    @property
    def models(self) -> Dict[str, str]:
        """Engine model name per role."""
        return {role: entry[0] for role, entry in self.settings.models.items()}

    def engine_params(self, role: str) -> Dict[str, str]:
        """The ``parameters`` of ``role``'s engine model config."""
        config = read_pbtxt(self.repo / self.models[role] / "config.pbtxt")
        return {k: v.string_value for k, v in config.parameters.items()}

    def runner(self, role: str, threads: int = 0, precision: Optional[str] = None) -> Infer:
        """``role``'s engine artifact loaded here: batch → first output.

        Args:
            role: The pipeline role (``TextDetection``, ...).
            threads: CPU threads for the engine; 0 uses every core.
            precision: The engine's float precision (``fp32``, ``bf16``) instead of its
                model config's.
        """
        params = self.engine_params(role)
        params["cpu_threads"] = str(threads)
        if precision:
            params["precision"] = precision
        runner = engines.create_runner(self.repo / self.models[role] / "1", params)
        return lambda batch: runner.run_list(np.asarray(batch, np.float32))[0]

    def flow(self, overrides: Optional[Dict[str, Infer]] = None) -> ocr_pipeline.OCRFlow:
        """The graph's flow; ``overrides`` replace the repository's engine for some roles."""
        overrides = overrides or {}
        return ocr_pipeline.OCRFlow.from_settings(
            self.settings, self.characters,
            lambda role: overrides[role] if role in overrides else self.runner(role))
