"""The one way every flow calls an engine: ``engine.run(*arrays) -> list``.

The model's inputs go in by position, every output comes back in order. A served engine
model called over BLS (:class:`bls.EngineCall`), an in-process runner
(``FunctionEngine(runner.run_list)``: the parity references, the build's accuracy gate and
the benches) and a test's stand-in are all one, so a flow never knows where its engines run.
"""

from __future__ import annotations

from typing import Callable, List, Protocol, Sequence

import numpy as np


class Engine(Protocol):
    """An engine as the flows call it."""

    def run(self, *arrays: np.ndarray) -> List[np.ndarray]:
        """One call: ``arrays`` in the model's input order; every output, in order."""


def tensor_names(names) -> List[str]:
    """An engine-call spec's input or output names as a list (a spec may name one as a
    string)."""
    return [names] if isinstance(names, str) else list(names)


def first_output(engine: Engine, x) -> np.ndarray:
    """``engine``'s first output for the single float32 input ``x`` (text detection and
    recognition, the classifiers, the unwarping model)."""
    return np.asarray(engine.run(np.asarray(x, np.float32))[0])


class FunctionEngine:
    """A function ``f(*arrays) -> outputs`` as an :class:`Engine` (recorders and stand-ins
    wrapping another engine).

    Args:
        function: Called with the arrays; returns a sequence of outputs.
    """

    def __init__(self, function: Callable[..., Sequence[np.ndarray]]):
        self.function = function

    def run(self, *arrays: np.ndarray) -> List[np.ndarray]:
        """``function(*arrays)`` as a list."""
        return list(self.function(*arrays))
