"""Repository transforms that serve and measure what the build wrote, above the build and the
server: quantize (``--quantize int8`` / ``--fast``: NNCF and the accuracy gate), layout
(``--concurrency``: engine layouts served on a real tritonserver and measured), local_ocr (a
built OCR graph run in process, for the gate and bench/). The build is handed them
(:class:`~hpi_triton.generator.plan.RepositoryTransform`); it imports none."""
