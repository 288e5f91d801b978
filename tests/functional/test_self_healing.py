"""Faults as they happen to a served OCR pipeline, against the real tritonserver: a stub killed
with SIGKILL, the wrapper killed with SIGKILL, the signals a process manager sends (also to a
process that started with them ignored), a large page, and a numpy-2 environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton.errors import ServiceUnavailableError
from hpi_triton.server import (
    TritonServer,
    child_processes,
    free_ports,
    server_memory,
    stub_processes,
    stub_regions,
)
from tests.support.ocr_dataset import make_pages
from tests.support.repos import build_ocr_repo

pytestmark = pytest.mark.functional

CLI = [sys.executable, "-m", "hpi_triton.cli"]


@pytest.fixture(scope="module")
def ocr_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    return build_ocr_repo(wheel_models, shared_cache_dir,
                          tmp_path_factory.mktemp("healing") / "repo")


@pytest.fixture(scope="module")
def graph_ocr_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    """The same OCR with its engines in the graph's process (``--hosting graph``)."""
    return build_ocr_repo(wheel_models, shared_cache_dir,
                          tmp_path_factory.mktemp("healing-graph") / "repo", hosting="graph")


@pytest.fixture(scope="module")
def page_png():
    ok, data = cv2.imencode(".png", make_pages(1, seed=7, lines_per_page=6)[0].image)
    assert ok
    return data.tobytes()


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may leave an orphan unreaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children(pid: int, marker: str):
    return [child for child, args in child_processes(pid) if marker.encode() in b" ".join(args)]


@pytest.mark.parametrize("repo_fixture, victim", [
    ("ocr_repo", "OCR_TextRecognition"), ("ocr_repo", "OCR"), ("graph_ocr_repo", "OCR")])
def test_a_killed_stub_comes_back_and_serves_correct_results(repo_fixture, page_png, victim,
                                                              request):
    """SIGKILL of an engine's or of the graph's stub (what the OOM killer does), also of a
    graph running its engines itself: not ready while it is reloaded, errors that say which
    model is recovering and are 'unavailable', then the same results as before, within 30 s,
    without restarting the server."""
    ocr_repo = request.getfixturevalue(repo_fixture)
    with TritonServer(ocr_repo, 0, 0, 0, exit_timeout=3) as server:
        client = Client(server.http_url)
        expected = client.predict("OCR", page_png)["rec_texts"]
        assert expected
        (old,) = stub_processes(server.process.pid)[victim][:1]
        region = Path("/dev/shm", stub_regions(server.process.pid)[old])
        assert region.exists()
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        not_ready, errors, recovered_after = False, [], None
        while time.monotonic() - killed < 30:
            ready = server.is_ready()
            not_ready = not_ready or not ready or not client.is_model_ready(victim)
            try:
                got = client.predict("OCR", page_png)["rec_texts"]
            except ServiceUnavailableError as exc:
                errors.append(str(exc))
            else:
                assert got == expected  # never a wrong result, during or after
                if ready and not_ready:
                    recovered_after = time.monotonic() - killed
                    break
            time.sleep(0.2)
        assert recovered_after is not None, f"not serving again within 30 s; errors: {errors}"
        assert not_ready, "readiness never said not ready while the model was reloaded"
        assert errors and all(victim in e for e in errors), errors
        assert old not in stub_processes(server.process.pid)[victim]
        assert [model for model, _ in server.supervisor.recoveries] == [victim]
        # The killed stub's shared memory (RAM in /dev/shm) does not stay behind.
        assert not region.exists()
        for _ in range(3):
            assert client.predict("OCR", page_png)["rec_texts"] == expected


def _start_serve(repo: Path, ignore=(), exit_timeout: int = 2):
    ports = free_ports(4)

    def child():
        for signum in ignore:  # as a background job of a non-interactive shell starts
            signal.signal(signum, signal.SIG_IGN)

    serve = subprocess.Popen(
        CLI + ["serve", str(repo), "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
               "--metrics-port", str(ports[2]), "--exit-timeout", str(exit_timeout),
               "--paddlex-api-port", str(ports[3])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=child)
    deadline = time.monotonic() + 180
    output = []
    while time.monotonic() < deadline:
        line = serve.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Ctrl-C" in line:
            break
    (server_pid,) = _children(serve.pid, "tritonserver")
    stubs = [pid for pids in stub_processes(server_pid).values() for pid in pids]
    assert stubs, "".join(output)
    return serve, server_pid, stubs, ports


def _gone_within(pids, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return False


def _cleanup(serve, server_pid):
    serve.kill()
    serve.wait()
    try:  # never leave a server behind, whatever the test found
        os.killpg(server_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_tritonserver_never_outlives_a_killed_serve(ocr_repo):
    serve, server_pid, stubs, ports = _start_serve(ocr_repo)
    try:
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait()
        # It gets SIGTERM when its parent dies, and stops within its exit timeout (2 s).
        assert _gone_within([server_pid, *stubs], 2 + 10), "tritonserver or a stub survived"
        from hpi_triton.server import port_is_free

        assert all(port_is_free(port) for port in ports)
    finally:
        _cleanup(serve, server_pid)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_signals_it_started_with_ignored(ocr_repo, signum):
    """``make test &``, nohup and CI runners start processes with SIGINT ignored; a process
    manager sends SIGTERM. Either stops serve, its tritonserver and the stubs, bounded."""
    serve, server_pid, stubs, _ = _start_serve(ocr_repo, ignore=(signal.SIGINT, signal.SIGTERM))
    try:
        started = time.monotonic()
        serve.send_signal(signum)
        serve.wait(timeout=2 + 10)
        assert time.monotonic() - started < 2 + 10
        assert _gone_within([server_pid, *stubs], 5)
    finally:
        _cleanup(serve, server_pid)


@pytest.fixture(scope="module")
def paddle_det_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    """Detection on Paddle Inference, as a measured build may choose on a near tie."""
    return build_ocr_repo(wheel_models, shared_cache_dir,
                          tmp_path_factory.mktemp("paddle-det") / "repo",
                          backends={"TextDetection": "paddle_infer"})


@pytest.mark.parametrize("repo_fixture, detection_stub", [
    ("ocr_repo", "OCR_TextDetection"), ("paddle_det_repo", "OCR_TextDetection"),
    ("graph_ocr_repo", "OCR")])
def test_memory_goes_back_after_a_large_page(repo_fixture, detection_stub, page_png, request):
    """A valid 4000x9000 page grows the detection engine's buffers to its size; they are
    handed back after the request instead of staying with the stub (before: +1.2 GB on
    OpenVINO; +6.7 GB on Paddle Inference, whose intermediate tensors kept their size), also
    where the graph runs the engine itself."""
    ocr_repo = request.getfixturevalue(repo_fixture)
    big = np.full((9000, 4000, 3), 255, np.uint8)
    for row in range(24):
        cv2.putText(big, f"Line {row} of a very large scanned page", (60, 300 + row * 350),
                    cv2.FONT_HERSHEY_SIMPLEX, 3.0, (0, 0, 0), 6)
    ok, data = cv2.imencode(".png", big)
    assert ok
    with TritonServer(ocr_repo, 0, 0, 0, exit_timeout=3) as server:
        client = Client(server.grpc_url, "grpc")
        for _ in range(3):
            client.predict("OCR", page_png)
        before = server_memory(server.process.pid)
        result = client.predict("OCR", data.tobytes())
        assert len(result["rec_texts"]) >= 20
        time.sleep(2)
        after = server_memory(server.process.pid)
    grown = after[detection_stub] - before[detection_stub]
    assert grown < 400, f"{detection_stub} stub kept {grown:.0f} MB after a large page"
    assert sum(after.values()) - sum(before.values()) < 700, (before, after)


@pytest.fixture(scope="module")
def numpy2_python(shared_cache_dir):
    """A venv with numpy 2 first on its path and this environment's packages after it: what
    installing a package that wants numpy >= 2 does to a serving environment."""
    venv = shared_cache_dir / "numpy2-venv"
    python = venv / "bin" / "python"
    if not (venv / ".ready").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy==2.2.6"], check=True,
                       timeout=600)
        (venv / ".ready").write_text("ok")
    site = next((venv / "lib").glob("python3.*/site-packages"))
    ours = [p for p in sys.path if p and Path(p).is_dir() and "site-packages" in p]
    root = str(Path(__file__).resolve().parents[2])
    (site / "zz_hpi_triton_env.pth").write_text("\n".join([root, *ours]) + "\n")
    return python


def test_serve_refuses_a_numpy2_environment(numpy2_python, ocr_repo):
    ports = free_ports(3)
    proc = subprocess.run([str(numpy2_python), "-m", "hpi_triton.cli", "serve", str(ocr_repo),
                           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
                           "--metrics-port", str(ports[2])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "numpy 2.2.6" in proc.stderr and "numpy<2" in proc.stderr, proc.stderr
    doctor = subprocess.run([str(numpy2_python), "-m", "hpi_triton.cli", "doctor", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert "numpy 2.2.6" in doctor.stdout


_UNGUARDED = """
import sys
from hpi_triton.errors import ServerError
from hpi_triton.server import TritonServer
try:
    TritonServer(sys.argv[1], 0, 0, 0, check_environment=False, supervise=False,
                 exit_timeout=2).start(timeout=240)
except ServerError as exc:
    print(exc)
    sys.exit(3)
print("served")
"""


def test_every_served_model_refuses_to_load_under_numpy2(numpy2_python, ocr_repo):
    """Past the serve guard (a tritonserver started by hand), the models' own load check
    stops a stub that would answer with empty tensors: the server does not start."""
    proc = subprocess.run([str(numpy2_python), "-c", _UNGUARDED, str(ocr_repo)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    for model in ("OCR", "OCR_TextDetection", "OCR_TextRecognition"):
        assert f"model '{model}'" in proc.stdout
    assert "numpy 2.2.6" in proc.stdout and "numpy<2" in proc.stdout



def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _heal_under_load(serve, server_pid: int, port: int, page: bytes) -> None:
    """Kill the recognition stub while it computes a request (that request then never
    completes, and tritonserver 2.51 never finishes unloading the dead instance) and wait
    until the supervisor has brought the model back."""
    import threading
    import urllib.request

    stop = threading.Event()

    def load():
        with Client(f"localhost:{port}") as client:
            while not stop.is_set():
                try:
                    client.predict("OCR", page)
                except Exception:  # noqa: BLE001 - errors while the model recovers
                    time.sleep(0.05)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        (victim,) = stub_processes(server_pid)["OCR_TextRecognition"][:1]
        deadline = time.monotonic() + 60
        ticks = _cpu_ticks(victim)
        while time.monotonic() < deadline:  # busy: a request is in flight on it
            time.sleep(0.02)
            now = _cpu_ticks(victim)
            if now > ticks:
                break
            ticks = now
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        healed = False
        while time.monotonic() < deadline and not healed:
            stubs = stub_processes(server_pid).get("OCR_TextRecognition", [])
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/v2/health/ready",
                                            timeout=2) as response:
                    healed = bool(stubs) and victim not in stubs and response.status == 200
            except OSError:
                pass
            time.sleep(0.2)
        assert healed, "the recognition model was not reloaded within 60 s"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_a_stop_after_a_heal_does_not_wait_on_the_dead(ocr_repo, page_png, how):
    """A stub killed mid-request, healed, then serve stopped with the default 30 s exit
    timeout: tritonserver unloads every live model in a second or two, and then used to wait
    the whole exit timeout on the dead instance, holding its ports. Now the server, its stubs
    and its ports are gone within a few seconds (SIGTERM) or 10 s of kill -9 of serve."""
    serve, server_pid, _, ports = _start_serve(ocr_repo, exit_timeout=30)
    try:
        _heal_under_load(serve, server_pid, ports[0], page_png)
        stubs = [pid for pids in stub_processes(server_pid).values() for pid in pids]
        server_log = Path(os.readlink(f"/proc/{server_pid}/fd/1"))
        started = time.monotonic()
        if how == "SIGTERM":
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=40)
            assert serve.returncode == 0
            assert time.monotonic() - started < 10, f"serve took {time.monotonic() - started:.1f} s"
        else:
            os.kill(serve.pid, signal.SIGKILL)
            serve.wait()
        assert _gone_within([server_pid, *stubs], 10 - (time.monotonic() - started)), \
            "tritonserver or a stub still running 10 s after the stop"
        from hpi_triton.server import port_is_free

        assert all(port_is_free(port) for port in ports)
        # The watchdog that stopped it (kill -9) or was told it is done (SIGTERM) is gone too,
        # and says in the server log what it did.
        assert _gone_within(_watchdogs(server_pid), 5)
        said = [line for line in server_log.read_text(errors="replace").splitlines()
                if line.startswith("hpi-triton watchdog:")]
        assert len(said) == (1 if how == "kill -9" else 0), said
    finally:
        _cleanup(serve, server_pid)


def _watchdogs(server_pid: int):
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hpi_triton.watchdog" in args and str(server_pid).encode() in args:
            found.append(int(proc.name))
    return found
