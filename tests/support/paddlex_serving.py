"""PaddleX 3.7.2's own basic serving (``paddlex --serve``) on a repository's model dirs, and a
client written as PaddleX's serving docs write one (plain HTTP, JSON, base64)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Tuple

import yaml

from hpi_triton.compare.paddlex_config import paddlex_job
from hpi_triton.server import free_port


def post(url: str, body: dict, timeout: float = 600, headers: Optional[dict] = None
         ) -> Tuple[int, dict]:
    """(HTTP status, parsed JSON) of POSTing ``body`` to ``url``, as PaddleX's docs do."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def b64(data: bytes) -> str:
    """``data`` as base64 text."""
    return base64.b64encode(data).decode("ascii")


def wait_healthy(url: str, process: Optional[subprocess.Popen] = None,
                 timeout: float = 300) -> None:
    """Wait until ``url``/health answers 200 (``process`` must stay up meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} was not healthy after {timeout:.0f} s")


class PaddleXServer:
    """``paddlex --serve`` on the PaddleX pipeline config equivalent to a served graph
    (the config ``hpi-triton compare`` gives PaddleX), in the PaddleX venv."""

    def __init__(self, paddlex_python: Path, repository: Path, served_name: str,
                 workdir: Path):
        report = json.loads((repository / "build_report.json").read_text())
        job = paddlex_job(report, served_name, [], {}, workdir=workdir)
        config = dict(job["config"], engine=job["engine"], engine_config=job["engine_config"])
        self.config_path = workdir / f"{served_name}.paddlex.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.binary = Path(paddlex_python).parent / "paddlex"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{served_name}.paddlex-serve.log"
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> PaddleXServer:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--serve", "--pipeline", str(self.config_path), "--device",
                 "cpu", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.url, self.process)
        except RuntimeError as exc:
            self.__exit__()
            raise RuntimeError(f"{exc}; log:\n{self.log_path.read_text()[-3000:]}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
