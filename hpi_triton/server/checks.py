"""What is checked before a server starts: free ports, a readable repository."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Dict, List, Optional

from hpi_triton.errors import (
    PortInUseError,
)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def repository_problem(repository) -> Optional[str]:
    """Why a local folder cannot be served (not a model repository), or None; remote
    repositories (s3://, gs://, as://) are left to tritonserver."""
    if "://" in str(repository):
        return None
    path = Path(repository)
    fix = ("serve the folder 'hpi-triton build --out' wrote, e.g. hpi-triton build --pipeline "
           "OCR --model TextDetection=DET_DIR --model TextRecognition=REC_DIR --out repo; "
           "hpi-triton serve repo")
    if not path.is_dir():
        return f"repository {str(path)!r} is not a folder: {fix}"
    if any(child.is_dir() and (child / "config.pbtxt").is_file() for child in path.iterdir()):
        return None
    if (path / "inference.yml").is_file() or (path / "config.pbtxt").is_file():
        what = ("a PaddleX model dir (inference.yml), not a model repository"
                if (path / "inference.yml").is_file() else
                "one model's folder (config.pbtxt), not the repository above it")
        return f"repository {str(path)!r} is {what}: {fix}"
    return f"repository {str(path)!r} holds no model (no sub-folder with a config.pbtxt): {fix}"


def check_ports_free(ports: Dict[str, int]) -> None:
    """Refuse ports another process holds (label → port, the label naming its option).

    Raises:
        PortInUseError: one of ``ports`` is taken.
    """
    for label, port in ports.items():
        if not port_is_free(port):
            raise PortInUseError(f"--{label}-port {port} is taken by another process; "
                                 f"stop it or pass another --{label}-port")


def free_port() -> int:
    """A TCP port free on loopback right now (for tests and ``--http-port 0``)."""
    return free_ports(1)[0]


def free_ports(count: int) -> List[int]:
    """``count`` distinct TCP ports free on loopback right now. The sockets stay bound until
    all are found: asked one after another, the kernel may hand out a port just released
    again (measured: HTTP and gRPC given the same port, tritonserver refusing to start)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
