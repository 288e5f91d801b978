"""Deterministic sample inputs for verification and measurement.

Shapes come from the Hpi dynamic-shape ranges (min and opt; max is often huge, e.g. 4000x4000
for text detection) or, without them, from the declared shape with dynamic dims filled in.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from hpi_triton.core.model_dir import ModelSource

Shapes = Dict[str, Tuple[int, ...]]

# Filled into dynamic non-batch dims when the model declares no ranges; multiples of 32 so
# detection backbones with stride 32 accept them.
_FALLBACK_DIMS = (320, 160)


def sample_shapes(source: ModelSource, max_batch_size: int) -> List[Shapes]:
    """Two input-shape sets: the small end and the typical size ("opt")."""
    names = [t.name for t in source.inputs]
    if source.dynamic_shapes and all(n in source.dynamic_shapes for n in names):
        small = {n: tuple(source.dynamic_shapes[n][0]) for n in names}
        opt = {n: tuple(source.dynamic_shapes[n][1]) for n in names}
        sets = [opt] if small == opt else [small, opt]
        if source.batched and max_batch_size >= 2 and all(s[0] == 1 for s in opt.values()):
            sets.append({n: (2,) + s[1:] for n, s in opt.items()})
        return sets
    sets = []
    for batch, fill in zip((1, min(2, max(max_batch_size, 1))), _FALLBACK_DIMS):
        shapes = {}
        for tensor in source.inputs:
            dims = list(tensor.shape)
            for i, d in enumerate(dims):
                if d < 0:
                    # A dynamic leading dim is the image batch, even where outputs are
                    # not batchable (detection: boxes of all images in one tensor).
                    dims[i] = batch if i == 0 else fill
            shapes[tensor.name] = tuple(dims)
        sets.append(shapes)
    return sets


def opt_shapes(source: ModelSource, max_batch_size: int) -> Shapes:
    """The shape set used to measure speed: the typical size at batch 1."""
    names = [t.name for t in source.inputs]
    if source.dynamic_shapes and all(n in source.dynamic_shapes for n in names):
        return {n: tuple(source.dynamic_shapes[n][1]) for n in names}
    return sample_shapes(source, max_batch_size)[0]


def with_batch(shapes: Shapes, batch: int) -> Shapes:
    """The same shapes with the leading dim replaced."""
    return {n: (batch,) + tuple(s[1:]) for n, s in shapes.items()}


def make_inputs(source: ModelSource, shapes: Shapes, seed: int = 0) -> Dict[str, np.ndarray]:
    """Arrays of the given shapes: uniform [0, 1) floats, small ints, fixed seed.

    Inputs with PaddleX ``trt_dynamic_shape_input_data`` (scale factors, image sizes) get
    those values instead, since random ones would be meaningless to the model.
    """
    rng = np.random.default_rng(seed)
    dtypes = {t.name: t.dtype for t in source.inputs}
    arrays = {}
    for name, shape in shapes.items():
        dtype = np.dtype(dtypes[name])
        known = _known_values(source.shape_input_data.get(name), shape)
        if known is not None:
            arrays[name] = known.astype(dtype)
        elif dtype.kind == "f":
            arrays[name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            arrays[name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            arrays[name] = rng.integers(0, 4, shape).astype(dtype)
    return arrays


def _known_values(ranges: Sequence[Sequence[float]] | None, shape) -> np.ndarray | None:
    if not ranges:
        return None
    size = int(np.prod(shape))
    for values in ranges:
        if len(values) >= size and size > 0:
            return np.asarray(values[:size], dtype=np.float64).reshape(shape)
    per_row = ranges[1]
    if shape and len(per_row) == int(np.prod(shape[1:])):
        return np.tile(np.asarray(per_row, dtype=np.float64), (shape[0], 1)).reshape(shape)
    return None
