"""PaddleX's doc_preprocessor flow (orientation, unwarping): a stage of the OCR, table, seal,
layout and formula flows and a pipeline of its own; below both ``ocr`` and ``documents``."""
