"""The Python-backend stub runs in the same Python environment as hpi-triton."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton.server import TritonServer

pytestmark = pytest.mark.functional

_MODEL = '''
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = np.array([f"{sys.prefix}|{np.__version__}".encode()], dtype=np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("where", out)]) for _ in requests]
'''
_CONFIG = '''backend: "python"
max_batch_size: 0
input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "where" data_type: TYPE_STRING dims: [1] }]
'''


def test_stub_uses_this_environment(tmp_path):
    """In a virtual environment the stub must import the venv's packages (its sys.prefix and
    numpy), not the base interpreter's: it embeds Python in isolated mode."""
    model = tmp_path / "repo" / "where"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(_MODEL)
    (model / "config.pbtxt").write_text(_CONFIG)
    with TritonServer(tmp_path / "repo", 0, 0, 0) as server:
        out = Client(server.http_url).infer("where", {"x": np.zeros(1, np.float32)})["where"]
    prefix, numpy_version = out.reshape(-1)[0].decode().split("|")
    assert prefix == sys.prefix
    assert numpy_version == np.__version__


def test_stop_drains_then_exits_and_leaves_no_shared_memory(tmp_path):
    """A client's open HTTP connection holds a stopping server for its exit timeout, no
    longer; the stubs' shared-memory regions are gone afterwards, also when the server had
    to be killed."""
    import os
    import time

    from hpi_triton.server import stub_regions

    model = tmp_path / "repo" / "where"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(_MODEL)
    (model / "config.pbtxt").write_text(_CONFIG)
    for exit_timeout, kill_after in ((2, None), (30, 1.0)):
        server = TritonServer(tmp_path / "repo", 0, 0, 0, exit_timeout=exit_timeout).start()
        client = Client(server.http_url)  # left open: keep-alive connection
        client.infer("where", {"x": np.zeros(1, np.float32)})
        regions = list(stub_regions(server.process.pid).values())
        assert regions and all(os.path.exists(f"/dev/shm/{r}") for r in regions)
        started = time.monotonic()
        server.stop(timeout=kill_after)  # kill_after < exit timeout: killed, then cleaned
        assert time.monotonic() - started < exit_timeout + 10
        assert server.process.poll() is not None
        assert not any(os.path.exists(f"/dev/shm/{r}") for r in regions)
        client.close()
