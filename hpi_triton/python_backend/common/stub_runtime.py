"""Process-level care of a Python-backend stub (every served model calls it).

* :func:`check_tensor_round_trip`: called by every served model's ``initialize``, so a stub
  that would answer with empty or wrong tensors (nvidia-pytriton's stub is built for numpy 1;
  under numpy 2 its responses came back empty, with no error) fails to load instead, naming
  the cause and the fix.
* :func:`release_heap`: glibc keeps freed heap memory in its arenas, so one large image would
  leave hundreds of MB with a stub for good. Served models call it after a request larger than
  their threshold, not after every request: ordinary requests keep reusing warm pages.
"""

import ctypes
import os

import numpy as np

_LIBC = None

#: Requests whose image (graph models) or engine inputs (engine models) exceed this many MB
#: hand their memory back afterwards; engine models take ``release_memory_above_mb``.
DEFAULT_RELEASE_ABOVE_MB = 32

#: Engine calls with more input bytes than this are followed by a fresh engine (an input of
#: 128 MB is a 3.3k x 3.3k float32 image); settable per model (``reload_engine_above_mb``).
DEFAULT_RELOAD_ABOVE_MB = 128


class StubEnvironmentError(RuntimeError):
    """The stub's Python environment cannot carry tensors correctly."""


# Written by hpi-triton beside a stub known to need numpy < 2 (nvidia-pytriton's).
NUMPY1_STUB_MARKER = "hpi_triton_stub_needs_numpy1"


def _stub_needs_numpy1() -> bool:
    try:
        stub_dir = os.path.dirname(os.readlink("/proc/self/exe"))
    except OSError:
        return False
    return os.path.isfile(os.path.join(stub_dir, NUMPY1_STUB_MARKER))


def check_tensor_round_trip(pb_utils) -> None:
    """Fail unless a known tensor survives the stub's numpy ↔ Triton tensor conversion.

    Raises:
        StubEnvironmentError: numpy is 2.x under a stub built for numpy 1 (hpi-triton marks
            nvidia-pytriton's), or the probe came back changed.
    """
    major = int(np.__version__.split(".")[0])
    if major >= 2 and _stub_needs_numpy1():
        raise StubEnvironmentError(
            f"numpy {np.__version__} ({np.__file__}) is on this stub's path; the Python-backend "
            f"stub of nvidia-pytriton is built for numpy 1 and answers with empty tensors under "
            f"numpy 2. Fix: pip install 'numpy<2' in the serving environment (hpi-triton's "
            f"deploy/constraints.txt pins it), or serve from an environment without numpy 2")
    probe = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1.0
    tensor = pb_utils.Tensor("probe", probe)
    back = pb_utils.Tensor.from_dlpack("probe", tensor.to_dlpack()).as_numpy()
    if back.shape != probe.shape or back.dtype != probe.dtype or not np.array_equal(back, probe):
        raise StubEnvironmentError(
            f"a float32 {list(probe.shape)} tensor came back from the stub as {back.dtype} "
            f"{list(back.shape)} with other values: this stub cannot carry tensors in this "
            f"environment (numpy {np.__version__}); serve from the environment hpi-triton was "
            f"installed in with deploy/constraints.txt")


def release_heap() -> None:
    """Give the process's free heap pages back to the system (glibc ``malloc_trim``)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc: nothing to trim this way
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
