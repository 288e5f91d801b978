"""Starting a real tritonserver on a repository (``hpi-triton serve``), split by concern.

The binary is ``--tritonserver PATH``, a ``tritonserver`` on PATH, or the one shipped in PyPI's
``nvidia-pytriton`` wheel (:mod:`.binary`). For the wheel's server a backend directory is
prepared outside site-packages (the Python backend plus the stub built for the running
Python), and the environment is set so the stub embeds *this* interpreter: its ``libpython``,
its stdlib and its site-packages, which hold the engine packages the Python-backend models
import (:mod:`.environment`). :mod:`.checks` runs before a start, :mod:`.processes` reads the
running tree from /proc, :mod:`.lifecycle` stops it in bounded time (and its watchdog),
:mod:`.supervisor` heals dead stubs, :mod:`.triton` is the server object.
"""

from hpi_triton.server.binary import (
    NUMPY1_STUB_MARKER,
    PYTHON_BACKEND_ARGS,
    find_tritonserver,
    with_backend_defaults,
)
from hpi_triton.server.checks import (
    check_ports_free,
    free_port,
    free_ports,
    port_is_free,
    repository_problem,
)
from hpi_triton.server.environment import (
    MALLOC_MODES,
    MALLOC_SETTINGS,
    TritonBinary,
    check_stub_environment,
    stub_environment,
    stub_environment_problems,
)
from hpi_triton.server.lifecycle import (
    DEAD_INSTANCE_GRACE,
    start_watchdog,
    stop_tritonserver,
    watch,
)
from hpi_triton.server.processes import (
    bind_to_parent,
    child_processes,
    server_memory,
    stub_processes,
    stub_regions,
)
from hpi_triton.server.supervisor import ModelSupervisor
from hpi_triton.server.triton import TritonServer

__all__ = ["DEAD_INSTANCE_GRACE", "MALLOC_MODES", "MALLOC_SETTINGS", "NUMPY1_STUB_MARKER",
           "PYTHON_BACKEND_ARGS", "ModelSupervisor", "TritonBinary", "TritonServer",
           "bind_to_parent", "check_ports_free", "check_stub_environment", "child_processes",
           "find_tritonserver", "free_port", "free_ports", "port_is_free", "repository_problem",
           "server_memory", "start_watchdog", "stop_tritonserver", "stub_environment",
           "stub_environment_problems", "stub_processes", "stub_regions", "watch",
           "with_backend_defaults"]
