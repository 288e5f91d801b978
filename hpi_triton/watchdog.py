"""``python -m hpi_triton.watchdog PID START TIMEOUT``: stops tritonserver PID once stdin
ends, i.e. once the ``hpi-triton serve`` that started it is gone (see
:func:`hpi_triton.server.start_watchdog`)."""

from __future__ import annotations

import sys

from hpi_triton.server import watch

if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
