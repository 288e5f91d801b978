"""``requirements.txt`` of a repository: the Python packages its Python-backend models import.

The serving image (``deploy/docker``) pip-installs exactly this file, so a server carries the
engines its repository uses and no others, at the versions the build verified against.
Natively hosted models (ONNX Runtime / OpenVINO / TensorRT platforms) need no package: the
official tritonserver image has those Triton backends.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from hpi_triton.core.cache import package_versions

REQUIREMENTS_TXT = "requirements.txt"

# backend → distributions its engine imports, per device (first installed spelling wins).
ENGINE_PACKAGES: Dict[str, Dict[str, Tuple[Tuple[str, ...], ...]]] = {
    "paddle_infer": {"cpu": (("paddlepaddle",),), "gpu": (("paddlepaddle-gpu",),)},
    "paddle_tensorrt": {"gpu": (("paddlepaddle-gpu",),)},
    "openvino": {"cpu": (("openvino",),)},
    "onnx_runtime": {"cpu": (("onnxruntime", "onnxruntime-gpu"),),
                     "gpu": (("onnxruntime-gpu",),)},
    "tensorrt": {"gpu": (("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
                         ("cuda-python",))},
}
ALWAYS = ("numpy",)
WITH_PIPELINES = ("opencv-python-headless",)


def installed_version(*names: str) -> Optional[Tuple[str, str]]:
    """``(distribution, version)`` of the first of ``names`` installed here."""
    for name, version in package_versions(names).items():
        if version:
            return name, version
    return None


def serving_requirements(device: str, python_hosted: Sequence[str],
                         pipelines: Sequence[Sequence[str]],
                         extra: Sequence[str] = ()) -> List[str]:
    """Requirement lines, pinned to the versions installed here (the ones verified).

    Args:
        device: ``cpu`` or ``gpu``.
        python_hosted: Backends of the models hosted in Python-backend models.
        pipelines: Per pipeline graph of the repository, the packages it imports besides
            numpy and OpenCV (its ``requirements()``).
        extra: Packages the repository's transforms add (licensing: cryptography).
    """
    groups: List[Tuple[str, ...]] = [(name,) for name in ALWAYS]
    for backend in dict.fromkeys(python_hosted):
        groups += ENGINE_PACKAGES.get(backend, {}).get(device, ())
    if pipelines:
        groups += [(name,) for name in WITH_PIPELINES]
    for packages in pipelines:
        groups += [(name,) for name in packages]
    groups += [(name,) for name in extra]
    lines = []
    for group in dict.fromkeys(groups):
        found = installed_version(*group)
        # Not installed here (a GPU build prepared on another machine): name it unpinned.
        line = f"{found[0]}=={found[1]}" if found else group[0]
        if line not in lines:
            lines.append(line)
    return lines


def requirements_text(lines: Sequence[str]) -> str:
    """``requirements.txt`` for a repository: a header saying what it is, then ``lines``."""
    header = ("# Python packages this repository's Python-backend models import, at the "
              "versions\n# 'hpi-triton build' verified with. deploy/docker/Dockerfile.* install "
              "this file.\n")
    paddle_gpu = any(line.startswith("paddlepaddle-gpu") for line in lines)
    if paddle_gpu:
        header += ("# paddlepaddle-gpu 3.x comes from Paddle's index, e.g.\n"
                   "--extra-index-url https://www.paddlepaddle.org.cn/packages/stable/cu126/\n")
    return header + "\n".join(lines) + "\n"
