"""PaddleX 3.7.2's serving API (``POST /ocr``, ``GET /health``, ...) in front of tritonserver.

Clients written from PaddleX's / PaddleOCR's serving docs work unchanged: the same endpoints,
request fields, response envelope and ``prunedResult``. :func:`~hpi_triton.paddlex_api.app.
create_app` builds the FastAPI app; ``hpi-triton serve`` starts it beside tritonserver and
``hpi-triton api`` runs it alone.
"""
