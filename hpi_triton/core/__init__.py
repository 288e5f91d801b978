"""The bottom layer, below the build (``generator``) and the backends (``triton_models``):
reading model directories (model_dir), the artifact cache and package versions (cache),
conversions in a child process (isolated), checking an artifact against Paddle Inference
(verify). Imports nothing of hpi_triton but errors and the runtime package's engines."""
