"""A built repository's OCR graph run in process: the graph's own flow over the repository's
own engine artifacts, without Triton in between.

The int8 gate (:mod:`.quantize`) and bench/ use it to read pages the way the served graph
reads them, with engines they swap per role (a quantized candidate, a recorder). Inside a
build it is made from the configs the build holds (:meth:`LocalOCR.from_build`); for a
repository built earlier, from its ``config.pbtxt`` files (:meth:`LocalOCR.load`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

from hpi_triton.generator.plan import BuildReport, PipelineReport
from hpi_triton.python_backend import engines
from hpi_triton.python_backend.common.engine import Engine, FunctionEngine
from hpi_triton.python_backend.engines.hosted import GRAPH_ENGINES_DIR
from hpi_triton.python_backend.ocr import ocr_pipeline
from hpi_triton.triton_models.config import read_pbtxt


@dataclass
class LocalOCR:
    """The OCR part of one pipeline graph of a repository (OCR itself, or the OCR a table /
    layout pipeline runs)."""

    repo: Path
    served_name: str
    settings: ocr_pipeline.OCRSettings
    characters: List[str]
    #: The ``parameters`` of each engine model the OCR calls, by model name (inside a build,
    #: the very dicts of the build's configs: a transform's edit shows here).
    engine_parameters: Mapping[str, Mapping[str, str]]
    #: Engine models the graph's seal OCR calls (layout_parsing's may share the general
    #: recognizer).
    seal_models: List[str] = field(default_factory=list)
    #: Where an engine's artifact is, by model name, where not ``repo/<model>/1``.
    engine_dirs: Dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_build(cls, repo: Path, pipeline: PipelineReport,
                   report: BuildReport) -> Optional[LocalOCR]:
        """The OCR flow of the graph ``pipeline`` the build ``report`` wrote into ``repo``
        (its staging folder), from the configs the build holds; None if it has none."""
        graph = report.model_config(pipeline.served_name)
        return cls._create(repo, pipeline.served_name, graph.parameters,
                           lambda model: report.model_config(model).parameters)

    @classmethod
    def load(cls, repo: Path, served_name: str) -> Optional[LocalOCR]:
        """The OCR flow of graph ``served_name`` in the repository ``repo`` built earlier (read
        from its ``config.pbtxt`` files), or None if it has none."""

        def parameters(model: str) -> Dict[str, str]:
            config = read_pbtxt(Path(repo) / model / "config.pbtxt")
            return {k: v.string_value for k, v in config.parameters.items()}

        return cls._create(repo, served_name, parameters(served_name), parameters)

    @classmethod
    def _create(cls, repo: Path, served_name: str, graph_parameters: Mapping[str, str],
                engine_parameters: Callable[[str], Mapping[str, str]]) -> Optional[LocalOCR]:
        """From the graph's config ``parameters`` and each engine model's (by name)."""
        if "pipeline_settings" not in graph_parameters:
            return None
        graph = json.loads(graph_parameters["pipeline_settings"])
        settings = graph.get("ocr", graph)
        models = settings.get("models") or {}
        chars = Path(repo) / served_name / "1" / "characters.txt"
        if "TextDetection" not in models or "TextRecognition" not in models or not chars.is_file():
            return None
        seal = (graph.get("seal_ocr") or {}).get("models") or {}
        ocr_settings = ocr_pipeline.OCRSettings.from_json(settings)
        # Engines the graph runs itself (--hosting graph) live in its version dir, with the
        # parameters their engine model had.
        hosted = json.loads(graph_parameters.get("hosted_engines", "{}"))
        engine_dirs = {model: Path(repo) / served_name / "1" / GRAPH_ENGINES_DIR / model
                       for model in hosted}
        return cls(Path(repo), served_name, ocr_settings,
                   chars.read_text(encoding="utf-8").split("\n"),
                   {entry[0]: (hosted[entry[0]]["parameters"] if entry[0] in hosted
                               else engine_parameters(entry[0]))
                    for entry in ocr_settings.models.values()},
                   [entry[0] for entry in seal.values()], engine_dirs)

    @property
    def models(self) -> Dict[str, str]:
        """Engine model name per role."""
        return {role: entry[0] for role, entry in self.settings.models.items()}

    def engine_params(self, role: str) -> Dict[str, str]:
        """The ``parameters`` of ``role``'s engine model config (a copy)."""
        return dict(self.engine_parameters[self.models[role]])

    def engine_dir(self, role: str) -> Path:
        """The folder holding ``role``'s engine artifact (in the graph where it hosts it)."""
        model = self.models[role]
        return self.engine_dirs.get(model, self.repo / model / "1")

    def runner(self, role: str, threads: int = 0, precision: Optional[str] = None) -> Engine:
        """``role``'s engine artifact loaded here, as the flow calls an engine.

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
        runner = engines.create_runner(self.engine_dir(role), params)
        return FunctionEngine(runner.run_list)

    def flow(self, overrides: Optional[Dict[str, Engine]] = None) -> ocr_pipeline.OCRFlow:
        """The graph's flow; ``overrides`` replace the repository's engine for some roles."""
        overrides = overrides or {}
        return ocr_pipeline.OCRFlow.from_settings(
            self.settings, self.characters,
            lambda role: overrides[role] if role in overrides else self.runner(role))
