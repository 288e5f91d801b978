"""Entry points: one ``TritonPythonModel`` per kind of served model (model.py imports one)."""
