"""The GPU stack: which CUDA major each GPU image and each pinned GPU wheel is built for.

A GPU engine loads its CUDA libraries by major version (``libcublasLt.so.13``); an
onnxruntime-gpu built for CUDA 13 inside a CUDA 12 image lists CUDAExecutionProvider, logs a
load failure and runs on the CPU. So the GPU image, ``deploy/constraints.txt`` and the ``gpu``
extra must name builds for one CUDA major: :func:`stack_problems` says where they do not
(``tests/unit/test_gpu_stack.py`` runs it on the project's own files), and ``hpi-triton
doctor`` uses :func:`wheel_cuda_major` to name what an installed wheel needs.

The facts below are recorded from their sources (cited per entry), since neither the image
nor NVIDIA's index can be read from every machine; ``tests/functional/test_gpu_refusal.py``
checks the onnxruntime-gpu rows against the real wheel's own build record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class TritonImage:
    """What one ``nvcr.io/nvidia/tritonserver:<release>-py3`` image carries."""

    cuda: str
    tensorrt: str
    driver: str
    python: str
    source: str


#: NVIDIA's Triton release notes ("Driver Requirements", "based on CUDA ...") and the Frameworks
#: support matrix (TensorRT per release).
TRITON_IMAGES: Dict[str, TritonImage] = {
    "25.01": TritonImage("12.8", "10.8.0.43", "R560+ (data center: R535 / R545 with forward "
                         "compatibility)", "3.12", "Triton release notes 25.01"),
    "25.10": TritonImage("13.0", "10.13.3.9", "R575+ per the release notes; CUDA 13.0 itself "
                         "documents R580 (data center: R535 / R545 with forward compatibility)",
                         "3.12", "Triton release notes 25.10 (CUDA 13.0.2); TensorRT as in "
                         "NVIDIA's support matrix for the CUDA 13.0.2 releases"),
}

#: The ``tensorrt`` meta-package pulls one CUDA flavour (its sdist's ``install_requires``).
TENSORRT_META_CUDA = {"10.8.0.43": 12, "10.13.3.9": 13}

#: Packages whose CUDA major this module knows how to derive.
GPU_PACKAGES = ("onnxruntime-gpu", "tensorrt", "tensorrt-cu12", "tensorrt-cu13",
                "tensorrt-cu12-libs", "tensorrt-cu13-libs", "cuda-python")


def _version_tuple(version: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def onnxruntime_gpu_cuda_major(version: str) -> int:
    """The CUDA major PyPI's onnxruntime-gpu ``version`` is built for.

    PyPI's builds (each wheel's ``onnxruntime/capi/build_and_package_info.py`` and METADATA):
    CUDA 11.8 up to 1.18, CUDA 12 from 1.19 (1.24.1-1.26.0: 12.8), CUDA 13.0 from 1.27.0.
    """
    parts = _version_tuple(version)
    if parts < (1, 19):
        return 11
    return 12 if parts < (1, 27) else 13


def wheel_cuda_major(package: str, version: str) -> Optional[int]:
    """The CUDA major a pinned GPU wheel needs, or None when it carries no CUDA code."""
    name = package.lower().replace("_", "-")
    if name == "onnxruntime-gpu":
        return onnxruntime_gpu_cuda_major(version)
    flavour = re.fullmatch(r"tensorrt-cu(\d+)(-libs|-bindings)?", name)
    if flavour:
        return int(flavour.group(1))
    if name == "tensorrt":
        return TENSORRT_META_CUDA.get(version)
    if name == "cuda-python":
        return _version_tuple(version)[0]
    return None


def image_release(image: str) -> Optional[str]:
    """``25.10`` for ``nvcr.io/nvidia/tritonserver:25.10-py3``."""
    found = re.search(r"tritonserver:(\d\d\.\d\d)-py3", image)
    return found.group(1) if found else None


def read_constraints(path: Path) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The ``name==version`` pins and the ``# image: key=ref`` lines of a constraints file."""
    pins, images = {}, {}
    for line in path.read_text().splitlines():
        image = re.match(r"#\s*image:\s*(\S+)=(\S+)$", line.strip())
        if image:
            images[image.group(1)] = image.group(2)
            continue
        pin = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if pin:
            pins[pin.group(1).lower()] = pin.group(2)
    return pins, images


def stack_problems(pins: Dict[str, str], image: str) -> List[str]:
    """Every pinned GPU wheel that does not match the GPU image's CUDA major or TensorRT.

    Args:
        pins: package name → pinned version (``deploy/constraints.txt``).
        image: the GPU image reference, e.g. ``nvcr.io/nvidia/tritonserver:25.10-py3``.
    """
    release = image_release(image)
    if release not in TRITON_IMAGES:
        return [f"GPU image {image!r}: release {release!r} is not recorded in "
                f"hpi_triton.gpu_stack.TRITON_IMAGES (known: {sorted(TRITON_IMAGES)}); record "
                f"its CUDA and TensorRT versions from NVIDIA's release notes"]
    facts = TRITON_IMAGES[release]
    cuda_major = int(facts.cuda.split(".")[0])
    problems = []
    for package in GPU_PACKAGES:
        if package not in pins:
            continue
        version = pins[package]
        major = wheel_cuda_major(package, version)
        if major is None:
            problems.append(f"{package}=={version}: its CUDA major is not recorded in "
                            f"hpi_triton.gpu_stack")
        elif major != cuda_major:
            problems.append(f"{package}=={version} is a CUDA {major} build; the GPU image "
                            f"{image} is CUDA {facts.cuda}")
        if package.startswith("tensorrt") and version != facts.tensorrt:
            problems.append(f"{package}=={version}: the GPU image carries TensorRT "
                            f"{facts.tensorrt}, and a plan loads only in the TensorRT it was "
                            f"built with")
    return problems
