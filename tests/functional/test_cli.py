"""The commands a user types: build, serve, infer, with their error paths."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from hpi_triton.server import free_port, free_ports

pytestmark = pytest.mark.functional

CLI = [sys.executable, "-m", "hpi_triton.cli"]


def _run(args, **kw):
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def cli_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "repo"
    proc = _run(["build", "--model", f"cls={wheel_models['ch_ppocr_mobile_v2_cls_onnx']}",
                 "--model", f"rec={wheel_models['PP-OCRv4_mobile_rec']}",
                 "--backend", "rec=openvino", "--out", str(out),
                 "--cache-dir", str(shared_cache_dir)])
    assert proc.returncode == 0, proc.stderr
    assert "rec: openvino (fp32) as python (--backend rec=openvino)" in proc.stdout
    return out


def test_serve_and_infer_from_the_command_line(cli_repo, tmp_path):
    ports = free_ports(4)
    log = tmp_path / "server.log"
    serve = subprocess.Popen(
        CLI + ["serve", str(cli_repo), "--http-port", str(ports[0]), "--grpc-port",
               str(ports[1]), "--metrics-port", str(ports[2]), "--log-file", str(log),
               "--paddlex-api-port", str(ports[3]),
               "--", "--pinned-memory-pool-byte-size=1048576"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = serve.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"HTTP    localhost:{ports[0]}" in text, text
        assert f"gRPC    localhost:{ports[1]}" in text
        # Arguments after '--' reach tritonserver itself.
        assert re.search(r"pinned_memory_pool_byte_size\s*\|\s*1048576\b", log.read_text())
        x = np.random.default_rng(1).standard_normal((1, 3, 48, 192)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        for protocol, port in (("http", ports[0]), ("grpc", ports[1])):
            proc = _run(["infer", "--url", f"localhost:{port}", "--protocol", protocol,
                         "--model", "cls", "--input", f"x={tmp_path / 'x.npy'}",
                         "--output-dir", str(tmp_path / protocol)])
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout.strip().splitlines()[0])
            assert result["shape"] == [1, 2] and result["dtype"] == "float32"
            saved = np.load(next((tmp_path / protocol).glob("*.npy")))
            assert np.allclose(np.array(result["data"]), saved)
        # A wrong dtype is refused with a message naming the input and the expected dtype.
        np.save(tmp_path / "bad.npy", x.astype(np.float64))
        proc = _run(["infer", "--url", f"localhost:{ports[0]}", "--model", "cls",
                     "--input", f"x={tmp_path / 'bad.npy'}"])
        assert proc.returncode == 2 and "expected float32" in proc.stderr
        # A second server on the same ports is refused clearly.
        proc = _run(["serve", str(cli_repo), "--http-port", str(ports[0]), "--grpc-port",
                     str(free_port()), "--metrics-port", str(free_port())])
        assert proc.returncode == 2 and f"--http-port {ports[0]} is taken" in proc.stderr
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        serve.wait(timeout=60)
    with socket.socket() as sock:  # the server really went away with Ctrl-C
        assert sock.connect_ex(("127.0.0.1", ports[0])) != 0


def test_build_errors_are_clear(wheel_models, tmp_path):
    proc = _run(["build", "--model", f"det={tmp_path / 'missing'}", "--out",
                 str(tmp_path / "r")])
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = _run(["build", "--model", f"cls={wheel_models['ch_ppocr_mobile_v2_cls_onnx']}",
                 "--backend", "cls=tflite", "--out", str(tmp_path / "r")])
    assert proc.returncode == 2 and "valid names" in proc.stderr and "openvino" in proc.stderr
    proc = _run(["build", "--model", "nodir", "--out", str(tmp_path / "r")])
    assert proc.returncode == 2 and "expected NAME=VALUE" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_build_vision_ensemble_with_instance_counts(shared_cache_dir, tmp_path):
    """--instances sets the engine's instances, --pipeline-instances the ensemble's pre/post
    models'; the summary names the ensemble's steps."""
    from hpi_triton import wheel_models as wm
    from hpi_triton.triton_models.config import read_pbtxt

    model = wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx", shared_cache_dir / "models")
    repo = tmp_path / "r"
    proc = _run(["build", "--pipeline", "image_classification", "--model",
                 f"ImageClassification={model}", "--name", "orientation", "--instances", "2",
                 "--cpu-threads", "1", "--pipeline-instances", "3", "--out", str(repo),
                 "--cache-dir", str(shared_cache_dir)])
    assert proc.returncode == 0, proc.stderr
    assert ("orientation_preprocess -> orientation_ImageClassification -> "
            "orientation_postprocess") in proc.stdout

    def count(name):
        return read_pbtxt(repo / name / "config.pbtxt").instance_group[0].count

    assert count("orientation_ImageClassification") == 2
    assert count("orientation_preprocess") == count("orientation_postprocess") == 3


def test_demo_builds_serves_and_reads_an_image(shared_cache_dir, tmp_path):
    """The README's main job, as typed (with free ports and a temp output)."""
    ports = [str(port) for port in free_ports(3)]
    env = dict(os.environ, HPI_TRITON_CACHE_DIR=str(shared_cache_dir))
    proc = subprocess.run(CLI + ["demo", "--once", "--out", str(tmp_path / "repo"),
                                 "--http-port", ports[0], "--grpc-port", ports[1],
                                 "--metrics-port", ports[2]],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("{"))
    result = json.loads(line)
    texts = ["".join(t.split()).lower() for t in result["rec_texts"]]
    assert "hellofromhpi-triton" in texts
    assert (tmp_path / "repo" / "OCR" / "config.pbtxt").is_file()


def test_tritonserver_command_execs_the_server_with_its_own_arguments(cli_repo):
    """The CPU image's entrypoint: tritonserver's own flags, signals straight to the server."""
    import urllib.request

    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen(CLI + ["tritonserver", f"--model-repository={cli_repo}",
                                   f"--http-port={http}", f"--grpc-port={grpc}",
                                   f"--metrics-port={metrics}", "--strict-readiness=true"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://localhost:{http}/v2/health/ready",
                                            timeout=2) as response:
                    ready = response.status == 200
            except OSError:
                pass
            if ready:
                break
            time.sleep(0.5)
        assert ready, proc.stdout.read().decode(errors="replace")[-3000:]
        with urllib.request.urlopen(f"http://localhost:{http}/v2/models/cls/ready") as answer:
            assert answer.status == 200
        proc.send_signal(signal.SIGTERM)  # exec'd: the pid is tritonserver's own
        assert proc.wait(timeout=60) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_models_fetch_makes_buildable_dirs(shared_cache_dir, tmp_path):
    env = {**os.environ, "HPI_TRITON_CACHE_DIR": str(shared_cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "models", "fetch",
                           "PP-OCRv4_mobile_det_onnx", "--out", str(tmp_path / "models")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "models" / "PP-OCRv4_mobile_det_onnx"
    assert f"PP-OCRv4_mobile_det_onnx: {folder}" in proc.stdout
    assert (folder / "inference.onnx").is_file() and (folder / "inference.yml").is_file()
    listed = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "models", "list"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert "PP-OCRv4_mobile_det_onnx" in listed.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_background_build_stops_on_a_signal(wheel_models, tmp_path, signum):
    """A background job of a non-interactive shell starts with SIGINT ignored: the build
    still stops on Ctrl-C-style SIGINT and on SIGTERM, leaving nothing behind."""
    out = tmp_path / "out"
    env = {**os.environ, "HPI_TRITON_CACHE_DIR": str(tmp_path / "cache")}  # a slow, cold build
    build = subprocess.Popen(
        CLI + ["build", "--model", f"det={wheel_models['PP-OCRv4_mobile_det']}",
               "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(6)  # imports done, converting
        assert build.poll() is None, build.communicate()
        build.send_signal(signum)
        _, err = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 130, err
    assert "build interrupted" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_the_readme_tour_as_typed(shared_cache_dir, tmp_path):
    """README 'A tour': models fetch → build → serve → infer, the commands as written (ports
    free ones, a rendered page), then the Python lines."""
    import cv2

    from hpi_triton import Client
    from hpi_triton.pages import make_pages

    env = {**os.environ, "HPI_TRITON_CACHE_DIR": str(shared_cache_dir)}
    ports = free_ports(4)
    page = make_pages(count=1, seed=5)[0]
    cv2.imwrite(str(tmp_path / "page.png"), page.image)

    def run(*args):
        proc = subprocess.run(CLI + list(args), capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    run("models", "fetch", "PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec", "--out", "models")
    run("build", "--pipeline", "OCR", "--out", "repo",
        "--model", "TextDetection=models/PP-OCRv4_mobile_det",
        "--model", "TextRecognition=models/PP-OCRv4_mobile_rec")
    serve = subprocess.Popen(CLI + ["serve", "repo", "--http-port", str(ports[0]),
                                    "--grpc-port", str(ports[1]), "--metrics-port",
                                    str(ports[2]), "--paddlex-api-port", str(ports[3])],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in serve.stdout:
            if "Ctrl-C stops the server" in line:
                break
        assert serve.poll() is None
        run("infer", "--url", f"localhost:{ports[0]}", "--pipeline", "OCR", "page.png",
            "--output-dir", "out")
        saved = json.loads((tmp_path / "out" / "page_res.json").read_text())["res"]
        with Client(f"localhost:{ports[0]}") as client:
            texts = client.predict("OCR", str(tmp_path / "page.png"))["rec_texts"]
        assert texts == saved["rec_texts"] and texts
        assert any(line in texts for line in page.lines), (texts, page.lines)
        # The curl line: PaddleX's serving API, plain HTTP + JSON as PaddleX's docs call it.
        import base64
        import urllib.request

        body = json.dumps({"file": base64.b64encode((tmp_path / "page.png").read_bytes())
                           .decode(), "fileType": 1}).encode()
        request = urllib.request.Request(f"http://localhost:{ports[3]}/ocr", body,
                                         {"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(request, timeout=120))
        assert answer["errorCode"] == 0
        assert answer["result"]["ocrResults"][0]["prunedResult"]["rec_texts"] == texts
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
