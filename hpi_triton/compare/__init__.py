"""``hpi-triton compare``: PaddleX's own pipeline against the served one, on the user's images.

PaddleX runs in its own environment (``--paddlex-python``; PaddleX 3.7 needs numpy 2) through
:mod:`hpi_triton.compare.paddlex_runner`, on the very model directories the repository was
built from (``build_report.json`` names them) with the build's parameters; the served
pipeline answers through :class:`hpi_triton.client.Client`. The two results are compared
field by field (:mod:`hpi_triton.compare.diff`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from hpi_triton.compare.diff import Difference, compare_results, ocr_line_stats
from hpi_triton.compare.paddlex_config import paddlex_job
from hpi_triton.errors import HpiTritonError

RUNNER = Path(__file__).with_name("paddlex_runner.py")

__all__ = ["ComparisonError", "ImageComparison", "Difference", "compare", "paddlex_job",
           "run_paddlex"]


class ComparisonError(HpiTritonError):
    """PaddleX could not be run for a comparison, or the repository cannot be compared."""


@dataclass
class ImageComparison:
    """One input (image or PDF page): the differences found, or why it could not be
    compared."""

    input_path: str
    page_index: Optional[int]
    differences: List[Difference] = field(default_factory=list)
    error: Optional[str] = None
    served: Optional[dict] = None
    paddlex: Optional[dict] = None

    @property
    def identical(self) -> bool:
        """Whether both sides answered and no field differs."""
        return self.error is None and not self.differences


def run_paddlex(python: str, job: Dict, timeout: float = 1800) -> List[dict]:
    """Run ``job`` under PaddleX's Python; its records (one per image or page).

    Raises:
        ComparisonError: the interpreter is missing, PaddleX is not installed there, or the
            run failed or timed out.
    """
    with tempfile.TemporaryDirectory(prefix="hpi-triton-compare-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.jsonl"
        job_path.write_text(json.dumps(job))
        try:
            proc = subprocess.run([python, str(RUNNER), str(job_path), str(out_path)],
                                  capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise ComparisonError(f"--paddlex-python {python!r} does not exist: give the "
                                  f"python of an environment with paddlex installed") from exc
        except subprocess.TimeoutExpired as exc:
            raise ComparisonError(f"PaddleX took over {timeout:.0f} s; compare fewer images"
                                  ) from exc
        if proc.returncode != 0 or not out_path.exists():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-6:])
            missing = "No module named 'paddlex'" in (proc.stderr or "")
            hint = (" (in that environment: pip install \"paddlex[ocr,cv]==3.7.2\" "
                    "paddlepaddle==3.3.1 onnxruntime, as the README's 'compare' section says)"
                    if missing else "")
            raise ComparisonError(f"PaddleX failed under {python}{hint}:\n{tail}")
        records = [json.loads(line) for line in out_path.read_text().splitlines() if line]
    if not records or not records[-1].get("done"):
        raise ComparisonError("PaddleX stopped before writing every result")
    return records[:-1]


def compare(client, served_name: str, report: Dict, inputs: List[str], python: str,
            params: Optional[Dict] = None, score_tolerance: float = 1e-3,
            concurrency: int = 4,
            model_names: Optional[Dict[str, str]] = None) -> List[ImageComparison]:
    """Compare the served pipeline ``served_name`` with PaddleX's on ``inputs``.

    Args:
        client: A :class:`hpi_triton.client.Client` of the server.
        served_name: The served pipeline graph's name.
        report: The repository's ``build_report.json``.
        inputs: Image paths (folders expanded); PDFs are passed to both sides whole.
        python: The Python of the environment PaddleX is installed in.
        params: Per-request parameters, given to both sides (PaddleX's names).
        score_tolerance: Largest difference of scores and other floats counted as equal.
        concurrency: Requests in flight to the server.
        model_names: Role → the PaddleX model name to run it as, for models whose
            inference.yml names a model PaddleX does not know.

    Raises:
        ComparisonError: the pipeline is not in the report or cannot be compared, or
            PaddleX failed.
    """
    from hpi_triton.inputs import expand

    params = dict(params or {})
    items = expand(inputs)
    paths = list(dict.fromkeys(str(item.path) for item in items if item.path is not None))
    with tempfile.TemporaryDirectory(prefix="hpi-triton-paddlex-models-") as workdir:
        job = paddlex_job(report, served_name, paths, params, model_names, Path(workdir))
        records = run_paddlex(python, job)
    by_input: Dict[tuple, dict] = {}
    failures: Dict[str, str] = {}
    for record in records:
        if "error" in record:
            failures[record["input"]] = record["error"]
        else:
            res = record["res"]
            by_input[(record["input"], _page_index(res.get("page_index")))] = res
    comparisons = []
    for prediction in client.predict_many(served_name, items, concurrency=concurrency,
                                          **params):
        key = (str(prediction.item.path) if prediction.item.path else prediction.input_path,
               prediction.page_index)
        entry = ImageComparison(prediction.input_path, prediction.page_index)
        theirs = by_input.get(key)
        if not prediction.ok:
            entry.error = f"served: {prediction.error}"
        elif theirs is None:
            entry.error = f"PaddleX: {failures.get(key[0], 'no result for this input')}"
        else:
            entry.served, entry.paddlex = prediction.result, theirs
            entry.differences = compare_results(prediction.result, theirs, score_tolerance)
        comparisons.append(entry)
    return comparisons


def _page_index(value):
    """A PaddleX page index as the served side has it: formula_recognition's JSON writes it
    as a string ("None", "0")."""
    if isinstance(value, str):
        return int(value) if value.isdigit() else None
    return value


def summary(comparisons: List[ImageComparison]) -> str:
    """One line: images identical, and for OCR-like results lines and boxes identical."""
    same = sum(c.identical for c in comparisons)
    failed = sum(c.error is not None for c in comparisons)
    line = f"{same}/{len(comparisons)} inputs identical to PaddleX"
    if failed:
        line += f", {failed} not compared"
    stats = ocr_line_stats([(c.served, c.paddlex) for c in comparisons if c.error is None])
    if stats:
        texts, boxes, total = stats
        if total:
            line += (f"; text lines identical {texts}/{total} ({100 * texts / total:.1f}%), "
                     f"boxes identical {boxes}/{total} ({100 * boxes / total:.1f}%)")
    return line
