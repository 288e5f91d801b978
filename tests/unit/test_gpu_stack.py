"""One CUDA major across the GPU image, deploy/constraints.txt and the gpu extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from hpi_triton import gpu_stack

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_match_the_gpu_image():
    pins, images = gpu_stack.read_constraints(ROOT / "deploy" / "constraints.txt")
    image = images["tritonserver"]
    assert gpu_stack.image_release(image) in gpu_stack.TRITON_IMAGES
    assert gpu_stack.stack_problems(pins, image) == []
    # Every GPU package the engines import is pinned, so nothing resolves to another CUDA.
    assert {"onnxruntime-gpu", "tensorrt", "tensorrt-cu13", "cuda-python"} <= set(pins)


def test_gpu_dockerfile_uses_the_recorded_image():
    pins, images = gpu_stack.read_constraints(ROOT / "deploy" / "constraints.txt")
    text = (ROOT / "deploy" / "docker" / "Dockerfile.gpu").read_text()
    assert f"ARG TRITON_IMAGE={images['tritonserver']}" in text


def _extra(name):
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["optional-dependencies"][name]


@pytest.mark.parametrize("extra", ["gpu", "tensorrt"])
def test_extras_name_the_images_cuda_major(extra):
    _, images = gpu_stack.read_constraints(ROOT / "deploy" / "constraints.txt")
    facts = gpu_stack.TRITON_IMAGES[gpu_stack.image_release(images["tritonserver"])]
    major = int(facts.cuda.split(".")[0])
    checked = 0
    for requirement in _extra(extra):
        match = re.match(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?>=([\d.]+)(?:,<([\d.]+))?",
                         requirement)
        if not match or match.group(1).lower() not in gpu_stack.GPU_PACKAGES:
            continue
        name, low, high = match.group(1).lower(), match.group(3), match.group(4)
        assert gpu_stack.wheel_cuda_major(name, low) == major, requirement
        assert high is not None, f"{requirement}: an upper bound keeps the next CUDA major out"
        if name == "cuda-python":
            assert high == f"{major + 1}", requirement
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("pins, image, fragment", [
    # The state this check was written against: a CUDA 13 wheel in the CUDA 12.8 image.
    ({"onnxruntime-gpu": "1.31.1"}, "nvcr.io/nvidia/tritonserver:25.01-py3",
     "onnxruntime-gpu==1.31.1 is a CUDA 13 build; the GPU image "
     "nvcr.io/nvidia/tritonserver:25.01-py3 is CUDA 12.8"),
    ({"onnxruntime-gpu": "1.26.0"}, "nvcr.io/nvidia/tritonserver:25.10-py3",
     "onnxruntime-gpu==1.26.0 is a CUDA 12 build"),
    ({"tensorrt-cu12": "10.13.3.9"}, "nvcr.io/nvidia/tritonserver:25.10-py3",
     "tensorrt-cu12==10.13.3.9 is a CUDA 12 build"),
    ({"tensorrt-cu13": "10.14.1.48"}, "nvcr.io/nvidia/tritonserver:25.10-py3",
     "the GPU image carries TensorRT 10.13.3.9"),
    ({"cuda-python": "12.8.0"}, "nvcr.io/nvidia/tritonserver:25.10-py3",
     "cuda-python==12.8.0 is a CUDA 12 build"),
    ({}, "nvcr.io/nvidia/tritonserver:24.05-py3", "release '24.05' is not recorded"),
])
def test_mismatches_are_named(pins, image, fragment):
    problems = gpu_stack.stack_problems(pins, image)
    assert any(fragment in problem for problem in problems), problems


@pytest.mark.parametrize("version, major", [
    ("1.18.1", 11), ("1.20.0", 12), ("1.24.1", 12), ("1.26.0", 12), ("1.27.0", 13),
    ("1.31.1", 13),
])
def test_onnxruntime_gpu_cuda_major(version, major):
    assert gpu_stack.onnxruntime_gpu_cuda_major(version) == major
