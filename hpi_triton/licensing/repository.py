"""Turning a freshly built (staging) repository into a licensed one.

For each pipeline graph: its engine models' artifacts are encrypted (AES-256-GCM under a key
only the pipeline's content private key re-derives, see :mod:`content`), ``license.json`` and
the license runtime go beside them, a gate model ``<graph>_license`` is added, and the graph
is told to call the gate first for every request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import BuildReport, RepositoryTransform
from hpi_triton.licensing.issuer import IssuerPublic, read_public
from hpi_triton.python_backend.engines import FROM_MEMORY
from hpi_triton.python_backend.licensing import certificate, content

# Backends whose engines load from memory (what a licensed repository may serve).
LICENSED_BACKENDS = ("onnx_runtime", "openvino")


class LicenseTransform(RepositoryTransform):
    """``hpi-triton build --license public.pem``: the build hands this to itself as a
    repository transform (see :class:`~hpi_triton.generator.plan.RepositoryTransform`).

    Raises:
        LicensingError: ``public_pem`` is not the issuer's readable public.pem.
    """

    name = "license"
    allowed_backends = LICENSED_BACKENDS
    requirements = ("cryptography",)  # certificates and content keys

    def __init__(self, public_pem: Path):
        self.public = read_public(public_pem)

    def check(self, plain_models, pipelines, options) -> None:
        """Refuse a build without pipelines, with plain models, or not hosted on the Python backend.

        Raises:
            BuildError: naming what the build must change for ``--license``.
        """
        if not pipelines or plain_models:
            raise BuildError("--license applies to pipelines: build with --pipeline (every "
                             "model of a licensed repository sits behind a pipeline's gate)")
        if options.hosting == "native":
            raise BuildError("--license needs --hosting auto, graph or python: licensed "
                             "engines are decrypted in memory by Python-backend models")

    def apply(self, staging: Path, report) -> List[Dict]:
        """Encrypt and gate every pipeline in ``staging``; return what was done per pipeline."""
        return protect(staging, report, self.public)


def protect(repo: Path, report: BuildReport, public: IssuerPublic) -> List[Dict]:
    """Encrypt and gate every pipeline of the staging repository ``repo`` that the build
    ``report`` describes (its engine models' configs edited as the build holds them); returns
    what was done per pipeline (for the build report)."""
    from hpi_triton.python_backend import EntryPoint, ship
    from hpi_triton.triton_models.config import InstanceGroup, TensorConfig, TritonModelConfig

    done = []
    for entry in report.pipelines:
        kind, graph = entry.pipeline, entry.served_name
        if kind not in public.content:
            raise BuildError(f"--license: the issuer's public.pem has no content key for "
                             f"pipeline {kind!r}; re-export it with this hpi-triton version")
        key, ephemeral = content.new_repository_key(public.content[kind])
        gate = f"{graph}_license"
        info = {"pipeline": kind, "issuer": public.signing_pem,
                "ephemeral_public": certificate.b64(ephemeral), "gate": gate}
        engines = sorted({call[0] for call in entry.roles.values()})
        encrypted = []
        for model in engines:
            version = repo / model / "1"
            config = report.model_config(model)
            engine = config.parameters.get("engine", config.platform or config.backend)
            if config.backend != "python" or engine not in FROM_MEMORY:
                raise BuildError(f"--license: model {model!r} is served by {engine!r}; a "
                                 f"licensed repository loads engines from memory, which "
                                 f"needs --hosting python with onnx_runtime or openvino")
            if config.warmup:
                # Warm-up runs at load time, before any certificate may be present; a
                # licensed engine warms up on its first unlocked request instead.
                config.warmup = []
                config.write(repo / model)
            for path in sorted(version.iterdir()):
                if path.is_file() and path.suffix != ".py":
                    encrypted.append(str(Path(content.encrypt_file(str(path), key))
                                         .relative_to(repo)))
            (version / "license.json").write_text(json.dumps(info, indent=1))
        gate_version = repo / gate / "1"
        gate_version.mkdir(parents=True)
        ship(gate_version, EntryPoint.LICENSE_GATE)
        (gate_version / "license.json").write_text(json.dumps(info, indent=1))
        TritonModelConfig(
            name=gate, backend="python", max_batch_size=0,
            inputs=[TensorConfig("probe", "uint8", [1])],
            outputs=[TensorConfig("status", "object", [1])],
            instance_groups=[InstanceGroup("cpu", 1)],
        ).write(repo / gate)
        checker = entry.license_check or graph  # the model that calls the gate
        (repo / checker / "1" / "license.json").write_text(json.dumps(info, indent=1))
        done.append({"pipeline": kind, "graph": graph, "gate": gate, "encrypted": encrypted})
    return done
