"""The pipelines one can build, by name: one class each, in its own module of this package.

A pipeline class declares its facts as class attributes (:class:`PipelineKind`) and registers
with :func:`register`; the CLI's choices and help, the build's requirements and source checks,
``--fast``, licensing and ``hpi-triton compare`` read them here. Adding a pipeline is adding a
module to ``hpi_triton/ensembles`` (found by :func:`names` without a list to edit) plus the
run-time flow it ships; nothing outside its module tests its name (as optimum's
``TasksManager`` and PaddleX's ``BasePipeline.get``).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path
from typing import ClassVar, Dict, Mapping, Optional, Tuple, Type

from hpi_triton.ensembles.serving import PaddleXEndpoint
from hpi_triton.errors import BuildError
from hpi_triton.python_backend.common.parameters import ParameterSet

_REGISTRY: Dict[str, Type[PipelineKind]] = {}
# Modules of this package that declare no pipeline (imported by the pipelines themselves).
_NOT_PIPELINES = ("base", "registry", "paddlex_yaml", "serving", "stages")


class PipelineKind:
    """What a pipeline class declares; an instance is one pipeline of a build (its roles,
    defaults, backends and served name) and writes its graph with ``write()``."""

    #: PaddleX's ``pipeline_name``: ``--pipeline`` and a pipeline YAML's name.
    pipeline_name: ClassVar[str] = ""
    #: Where it is listed (lower first, then by name).
    listing_order: ClassVar[int] = 100
    #: One line for ``--help``, ``hpi-triton pipelines`` and the README.
    summary: ClassVar[str] = ""
    #: Its roles (PaddleX SubModules names, ``--model ROLE=DIR``): required, then optional.
    required_roles: ClassVar[Tuple[str, ...]] = ()
    optional_roles: ClassVar[Tuple[str, ...]] = ()
    #: What its run-time flow imports besides numpy and OpenCV (the repository's
    #: requirements.txt).
    packages: ClassVar[Tuple[str, ...]] = ()
    #: Whether ``--fast`` (int8 engines and width-bucketed recognition, gated by measured
    #: accuracy) applies: the pipeline reads general text.
    fast: ClassVar[bool] = False
    #: What ``--fast`` sets unless the user gives it (parameter name → value), beside int8.
    fast_params: ClassVar[Mapping[str, object]] = {}
    #: The PaddleX serving endpoint its graphs answer (``hpi-triton serve --paddlex-api``),
    #: None where only KServe v2 serves it.
    paddlex_endpoint: ClassVar[Optional[PaddleXEndpoint]] = None
    #: The per-request parameters PaddleX's ``predict()`` takes that ``hpi-triton compare``
    #: passes to both sides.
    predict_params: ClassVar[Tuple[str, ...]] = ()
    #: What ``--param``, the pipeline YAML and each request may set, composed from its
    #: stages' declarations (docs/parameters.md and ``hpi-triton pipelines NAME`` show it).
    parameters: ClassVar[ParameterSet] = ParameterSet()

    @classmethod
    def create(cls, roles: Mapping[str, Path], params: dict, backends: Mapping[str, str],
               instances: int, served_name: Optional[str]) -> PipelineKind:
        """One pipeline of this kind, its graph served as ``served_name`` (default: the
        pipeline's name)."""
        return cls(roles=dict(roles), params=dict(params), backends=dict(backends),
                   instances=instances, name=served_name or cls.pipeline_name)

    @property
    def reads_general_text(self) -> bool:
        """Whether this pipeline runs the general OCR flow (detection + recognition of
        horizontal text) that ``--fast``'s accuracy gate can measure: what :attr:`fast`
        declares, unless a build's own settings say otherwise."""
        return self.fast

    @classmethod
    def with_fast_params(cls, params: Mapping[str, object]) -> Dict[str, object]:
        """``params`` with :attr:`fast_params` added where the user gave neither the name nor
        one of its aliases.

        Raises:
            BuildError: ``--fast`` does not apply to this pipeline (it reads no general text).
        """
        if not cls.fast:
            readers = ", ".join(n for n, kind in kinds().items() if kind.fast)
            raise BuildError(f"--fast applies to pipelines that read general text ({readers}); "
                             f"--pipeline {cls.pipeline_name} has none to speed up")
        given = {cls.parameters.resolve(name) or name for name in params}
        added = {k: v for k, v in cls.fast_params.items()
                 if (cls.parameters.resolve(k) or k) not in given}
        return {**added, **params}

    @classmethod
    def check_roles(cls, roles: Mapping[str, object]) -> None:
        """Refuse a missing required role or one the pipeline does not have, naming both
        lists.

        Raises:
            BuildError: the roles do not fit.
        """
        missing = [r for r in cls.required_roles if r not in roles]
        unknown = sorted(set(roles) - set(cls.required_roles) - set(cls.optional_roles))
        if missing or unknown:
            raise BuildError(f"pipeline {cls.pipeline_name} takes --model ROLE=DIR with roles "
                             f"{', '.join(cls.required_roles) or 'none'} (required) and "
                             f"{', '.join(cls.optional_roles) or 'no others'}; missing "
                             f"{missing}, not supported {unknown}")

    def requirements(self) -> Tuple[str, ...]:
        """The packages this pipeline's graph imports (:attr:`packages`, and those of the
        optional stages it was built with)."""
        return self.packages

    def check_sources(self, sources) -> None:
        """Check what this pipeline reads from its roles' model dirs beyond the engines'
        signatures, before anything is converted (a missing tokenizer fails in a second)."""

    @classmethod
    def paddlex_config(cls, report: dict, entry: dict) -> Optional[dict]:
        """PaddleX's pipeline config reproducing the built ``entry`` of ``report``
        (``build_report.json``), for ``hpi-triton compare``; None where not comparable."""
        return None

    @classmethod
    def comparable(cls) -> bool:
        """Whether it writes a PaddleX config, so ``hpi-triton compare`` can run PaddleX's own
        pipeline beside it."""
        return cls.paddlex_config.__func__ is not PipelineKind.paddlex_config.__func__


def register(cls: Type[PipelineKind]) -> Type[PipelineKind]:
    """Class decorator: make ``cls`` buildable as ``--pipeline cls.pipeline_name``."""
    name = cls.pipeline_name
    if not name or not issubclass(cls, PipelineKind):
        raise TypeError(f"{cls.__name__}: a pipeline subclasses PipelineKind and sets "
                        f"pipeline_name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise TypeError(f"pipeline {name!r} is declared twice: {_REGISTRY[name].__module__} "
                        f"and {cls.__module__}")
    _REGISTRY[name] = cls
    return cls


@functools.cache
def _discover() -> None:
    """Import every pipeline module of this package, once (each registers its classes)."""
    package = Path(__file__).parent
    for info in pkgutil.iter_modules([str(package)]):
        if info.name not in _NOT_PIPELINES:
            importlib.import_module(f"{__package__}.{info.name}")


def kinds() -> Dict[str, Type[PipelineKind]]:
    """Every declared pipeline by name, in listing order."""
    _discover()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].listing_order, item[0])))


def names() -> Tuple[str, ...]:
    """The names ``--pipeline`` takes."""
    return tuple(kinds())


def get(name: str) -> Type[PipelineKind]:
    """The pipeline class called ``name`` (case as PaddleX spells it, or any case).

    Raises:
        BuildError: no such pipeline; the message lists the known ones.
    """
    known = kinds()
    key = str(name).strip()
    if key in known:
        return known[key]
    folded = {k.lower(): cls for k, cls in known.items()}
    if key.lower() in folded:
        return folded[key.lower()]
    raise BuildError(f"--pipeline {name!r} is not supported; known pipelines: "
                     f"{', '.join(known)}")
