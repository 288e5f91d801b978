"""Run PaddleX's own pipeline on images and write its results: the other half of
``hpi-triton compare``.

This file runs under *another* Python, the one PaddleX is installed in (PaddleX 3.7 needs
numpy 2, which the server's environment cannot have), so it imports nothing from hpi_triton:
``PYTHON paddlex_runner.py JOB.json OUT.jsonl``. JOB holds ``config`` (a PaddleX pipeline
config, model_dir filled in), ``inputs`` (image paths), ``predict`` (keyword arguments of
the pipeline's predict), ``device``, ``engine`` and ``engine_config``. OUT gets one JSON line
per input: ``{"input": PATH, "res": PaddleX's res.json["res"], "seconds": S}`` or
``{"input": PATH, "error": MESSAGE}``, then ``{"done": true, "paddlex": VERSION}``. An optional
``warmup`` path is predicted first and not recorded (bench/ocr.py times PaddleX warm).
"""

import json
import sys
import time
import traceback


def _plain(value):
    """JSON-safe copies of numpy values PaddleX may leave in its results."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - PaddleX needs numpy
        np = None
    if np is not None and isinstance(value, np.ndarray):
        return value.tolist()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def main(job_path, out_path):
    """Run the job in ``job_path``; write its results to ``out_path``."""
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    import paddlex
    from paddlex import create_pipeline

    options = {"config": job["config"], "device": job.get("device", "cpu")}
    if job.get("engine"):
        options["engine"] = job["engine"]
        options["engine_config"] = job.get("engine_config") or {}
    pipeline = create_pipeline(**options)
    if job.get("warmup"):
        list(pipeline.predict(job["warmup"], **(job.get("predict") or {})))
    with open(out_path, "w", encoding="utf-8") as out:
        for path in job["inputs"]:
            try:
                started = time.perf_counter()
                results = list(pipeline.predict(path, **(job.get("predict") or {})))
                seconds = time.perf_counter() - started
                for res in results:
                    record = {"input": path, "res": _plain(res.json["res"]), "seconds": seconds}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            except Exception as exc:  # one bad input must not stop the others
                out.write(json.dumps({"input": path, "error": f"{type(exc).__name__}: {exc}",
                                      "trace": traceback.format_exc(limit=3)}) + "\n")
            out.flush()
        out.write(json.dumps({"done": True, "paddlex": paddlex.__version__}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
