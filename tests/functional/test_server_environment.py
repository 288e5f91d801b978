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
