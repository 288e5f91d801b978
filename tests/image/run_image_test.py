"""The CPU image for real (``make image-test``, run by ``.ci/run``): built with the README's
commands, run, asked, healed and stopped by Docker.

1. A Docker daemon: the one running, else Debian's ``docker.io`` (installed when absent, as
   root with apt-get) started with ``--storage-driver=vfs --iptables=false --bridge=none``,
   which runs in a VM or a container without kernel overlay or iptables. Skips (exit 0,
   saying why) only when no daemon can run here.
2. The base image ``python:3.11.11-slim-bookworm`` (the Dockerfile's default), pulled when a
   registry answers; otherwise a stand-in made from Debian packages and kept as a local image
   (``hpi-triton-test/python:3.11-bookworm``; its rootfs tarball under .ci-cache/image-test):
   ``debootstrap --variant=minbase bookworm`` + Debian's python3.11, python3-pip and
   libpython3.11. It differs from the official image in that its Python is Debian's 3.11.2
   (built without a shared library; libpython3.11 provides it, as the Python-backend stub
   needs) and pip is Debian's, installing into /usr/local/lib/python3.11/dist-packages.
3. An OCR repository (PP-OCRv4 mobile det/rec from PyPI wheels, OpenVINO engines) written by
   ``hpi-triton build`` into .ci-cache/image-test/repo.
4. The README's two builds: the image with the repository baked in, by the classic builder
   (``DOCKER_BUILDKIT=0``), and ``--target runtime`` by BuildKit (no frontend fetched).
5. Each image run as the README runs it (``--init --stop-timeout 40 --shm-size=1g``; with
   ``--network none`` instead of ``-p``: a daemon without a bridge cannot publish ports, so
   requests go through ``docker exec``), the runtime one with the repository mounted at
   /models: Docker's health status ``healthy``, an OCR request answered; on the baked-in one
   the recognition stub is killed (SIGKILL) and the model comes back serving the same text;
   ``docker stop`` ends within the grace with exit code 0 (promptly after the heal).
6. Everything it made is removed (containers, the two images; the base stand-in stays as a
   cache), and a daemon it started is stopped.

Run: ``python tests/image/run_image_test.py`` from the project root (``make image-test``).
Exit code 0 when everything passed or the test was skipped, 1 on a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".ci-cache" / "image-test"
REPO = CACHE / "repo"  # inside the build context (.dockerignore keeps it in)
BASE = "python:3.11.11-slim-bookworm"
STAND_IN = "hpi-triton-test/python:3.11-bookworm"
ROOTFS_IMAGE = "hpi-triton-test/debian:bookworm-minbase-2"
TAG = "hpi-triton-cpu-image-test"
STOP_TIMEOUT = 40  # above serve's 30 s exit timeout, as the README's docker run
T0 = time.monotonic()
TIMES: dict = {}


def log(message: str) -> None:
    print(f"[image-test {time.monotonic() - T0:6.0f}s] {message}", flush=True)


class Skip(Exception):
    """No Docker daemon can run here."""


class Failure(Exception):
    """What the image did wrong."""


def run(cmd, check=True, timeout=1800, env=None, quiet=False, stream=False, **kwargs):
    """Run ``cmd``; ``stream``: its output goes to this log as it comes (long builds)."""
    if not quiet:
        log("$ " + " ".join(str(c) for c in cmd))
    if stream:
        proc = subprocess.run([str(c) for c in cmd], stdout=sys.stdout, stderr=sys.stdout,
                              text=True, timeout=timeout, env=env, **kwargs)
        proc.stdout = proc.stderr = "(output above)"
    else:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                              timeout=timeout, env=env, **kwargs)
    if check and proc.returncode != 0:
        raise Failure(f"{' '.join(str(c) for c in cmd[:4])} ... exited {proc.returncode}:\n"
                      f"{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


def docker_binary() -> str:
    # Debian's client first: another client on PATH (say Docker 28 without buildx) may refuse
    # BuildKit builds that this daemon's own BuildKit runs.
    for path in ("/usr/bin/docker", shutil.which("docker")):
        if path and os.access(path, os.X_OK):
            return path
    return ""


def ensure_daemon():
    """(docker client, the dockerd Popen this test started or None)."""
    docker = docker_binary()
    if docker and run([docker, "info"], check=False, quiet=True, timeout=60).returncode == 0:
        return docker, None
    if not shutil.which("dockerd"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise Skip("no Docker daemon runs here and Debian's docker.io cannot be installed "
                       "(needs root and apt-get)")
        log("installing Debian's docker.io")
        if run(["apt-get", "install", "-y", "-qq", "docker.io"], check=False).returncode:
            run(["apt-get", "update", "-qq"], check=False)
            if run(["apt-get", "install", "-y", "-qq", "docker.io"], check=False).returncode:
                raise Skip("Debian's docker.io could not be installed here")
        docker = docker_binary()
    if os.geteuid() != 0:
        raise Skip("no Docker daemon runs here and starting one needs root")
    CACHE.mkdir(parents=True, exist_ok=True)
    daemon_log = open(CACHE / "dockerd.log", "wb")
    log("starting dockerd --storage-driver=vfs --iptables=false --bridge=none")
    daemon = subprocess.Popen(["dockerd", "--storage-driver=vfs", "--iptables=false",
                               "--bridge=none"], stdout=daemon_log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            break
        if run([docker, "info"], check=False, quiet=True, timeout=30).returncode == 0:
            return docker, daemon
        time.sleep(1)
    stop_daemon(daemon)
    tail = (CACHE / "dockerd.log").read_text(errors="replace")[-1500:]
    raise Skip(f"dockerd could not start here:\n{tail}")


def stop_daemon(daemon) -> None:
    if daemon is not None and daemon.poll() is None:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def has_image(docker: str, name: str) -> bool:
    return run([docker, "image", "inspect", name], check=False, quiet=True).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1:
                return words[1]
            if line.startswith("deb ") and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


STAND_IN_DOCKERFILE = f"""\
FROM {ROOTFS_IMAGE}
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3.11 python3-pip libpython3.11 \\
       ca-certificates \\
    && update-ca-certificates \\
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \\
    && ln -s /usr/bin/python3.11 /usr/local/bin/python \\
    && ln -s /usr/bin/pip3 /usr/local/bin/pip
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
"""
# This machine's own CA certificates (a TLS-inspecting proxy's, say) go into the stand-in, so
# that pip in the image builds trusts what pip on this machine trusts.
LOCAL_CAS = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


def stand_in_name() -> str:
    digest = hashlib.sha256(STAND_IN_DOCKERFILE.encode())
    for cert in LOCAL_CAS:
        digest.update(cert.read_bytes())
    return f"{STAND_IN}-{digest.hexdigest()[:10]}"


def base_image(docker: str) -> str:
    """The Dockerfile's base image, or the Debian-made stand-in (made once, then reused)."""
    if has_image(docker, BASE):
        return BASE
    if run([docker, "pull", BASE], check=False, timeout=120).returncode == 0:
        return BASE
    stand_in = stand_in_name()
    if has_image(docker, stand_in):
        log(f"{BASE} cannot be pulled: using the stand-in {stand_in} made before")
        return stand_in
    started = time.monotonic()
    log(f"{BASE} cannot be pulled: making the stand-in {stand_in} from Debian packages")
    if not has_image(docker, ROOTFS_IMAGE):
        tarball = CACHE / "bookworm-minbase-2.tar"
        if not tarball.is_file():
            if not shutil.which("debootstrap"):
                run(["apt-get", "install", "-y", "-qq", "debootstrap"])
            rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
            rootfs.chmod(0o755)  # the image's / (mkdtemp's 0700 locks out USER 1000)
            try:
                run(["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()],
                    timeout=1800)
                run(["tar", "-C", rootfs, "-cf", f"{tarball}.part", "."])
                os.replace(f"{tarball}.part", tarball)
            finally:
                shutil.rmtree(rootfs, ignore_errors=True)
        with open(tarball, "rb") as stream:
            run([docker, "import", "-", ROOTFS_IMAGE], stdin=stream)
    with tempfile.TemporaryDirectory(dir=CACHE) as context:
        (Path(context) / "certs").mkdir()
        for cert in LOCAL_CAS:
            shutil.copy(cert, Path(context) / "certs" / cert.name)
        (Path(context) / "Dockerfile").write_text(STAND_IN_DOCKERFILE)
        run([docker, "build", "--network", "host", "-t", stand_in, context],
            env={**os.environ, "DOCKER_BUILDKIT": "0"})
    TIMES["base stand-in (s)"] = round(time.monotonic() - started)
    return stand_in


def build_repository(python: str) -> None:
    """PP-OCRv4 mobile det/rec from PyPI wheels, OpenVINO engines, by ``hpi-triton build``."""
    if (REPO / "requirements.txt").is_file() and (REPO / "OCR").is_dir():
        return
    started = time.monotonic()
    env = {**os.environ, "HPI_TRITON_CACHE_DIR": str(CACHE / "hpi")}
    found = run([python, "-c", "import json, sys; from hpi_triton import wheel_models as w; "
                 "print(json.dumps({k: str(v) for k, v in w.model_dirs(sys.argv[1:], "
                 f"root=__import__('pathlib').Path({str(CACHE / 'models')!r})).items()}}))",
                 "PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec"], env=env, cwd=ROOT)
    dirs = json.loads(found.stdout.strip().splitlines()[-1])
    shutil.rmtree(REPO, ignore_errors=True)
    run([python, "-m", "hpi_triton.cli", "build", "--pipeline", "OCR",
         "--model", f"TextDetection={dirs['PP-OCRv4_mobile_det']}",
         "--model", f"TextRecognition={dirs['PP-OCRv4_mobile_rec']}",
         "--backend", "TextDetection=openvino", "--backend", "TextRecognition=openvino",
         "--out", REPO], env=env, cwd=ROOT, timeout=1800)
    TIMES["repository build (s)"] = round(time.monotonic() - started)


def build_images(docker: str, base: str) -> None:
    """The README's builds (from the project root), plus --network host: this daemon has no
    bridge, and the build reaches PyPI through the host's network."""
    repo = REPO.relative_to(ROOT)
    common = ["-f", "deploy/docker/Dockerfile.cpu", "--build-arg", f"REPOSITORY={repo}",
              "--build-arg", f"PYTHON_IMAGE={base}", "--network", "host"]
    started = time.monotonic()
    run([docker, "build", *common, "-t", f"{TAG}:bundled", "."], cwd=ROOT, timeout=3600,
        env={**os.environ, "DOCKER_BUILDKIT": "0"}, stream=True)
    TIMES["image build, classic builder (s)"] = round(time.monotonic() - started)
    started = time.monotonic()
    run([docker, "build", *common, "--target", "runtime", "-t", f"{TAG}:runtime", "."],
        cwd=ROOT, timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "1",
                                     "BUILDKIT_PROGRESS": "plain"}, stream=True)
    TIMES["image build --target runtime, BuildKit (s)"] = round(time.monotonic() - started)
    size = run([docker, "image", "inspect", "-f", "{{.Size}}", f"{TAG}:bundled"]).stdout
    TIMES["image size (MB)"] = round(int(size.strip()) / 1e6)
    listed = run([docker, "run", "--rm", "--network", "none", "--entrypoint", "pip",
                  f"{TAG}:runtime", "list", "--format=json"]).stdout
    packages = {p["name"].lower() for p in json.loads(listed)}
    gpu = sorted(packages & {"cuda-python", "cuda-bindings", "perf-analyzer"})
    if gpu:
        raise Failure(f"the CPU image carries GPU packages: {gpu}")


_OCR = """
import json, sys
import cv2, numpy as np
from hpi_triton import Client
page = np.full((360, 1100, 3), 255, np.uint8)
for row, text in enumerate(["HPI TRITON IMAGE TEST", "SERVED FROM DOCKER 2026"]):
    cv2.putText(page, text, (40, 120 + row * 140), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 5)
ok, data = cv2.imencode(".png", page)
print(json.dumps(Client("localhost:8000").predict("OCR", data.tobytes())["rec_texts"]))
"""


_PADDLEX_OCR = """
import base64, json, urllib.request
import cv2, numpy as np
page = np.full((360, 1100, 3), 255, np.uint8)
for row, text in enumerate(["HPI TRITON IMAGE TEST", "SERVED FROM DOCKER 2026"]):
    cv2.putText(page, text, (40, 120 + row * 140), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 5)
body = json.dumps({"file": base64.b64encode(cv2.imencode(".png", page)[1].tobytes()).decode(),
                   "fileType": 1, "visualize": False}).encode()
request = urllib.request.Request("http://localhost:8080/ocr", body,
                                 {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=60))
assert answer["errorCode"] == 0, answer
print(json.dumps(answer["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]))
"""


def paddlex_ocr(docker: str, container: str):
    """The same page through PaddleX's serving API (port 8080), as PaddleX's docs call it."""
    proc = run([docker, "exec", container, "python", "-c", _PADDLEX_OCR], check=False,
               quiet=True, timeout=120)
    if proc.returncode != 0:
        raise Failure(f"PaddleX's /ocr in the container failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ocr(docker: str, container: str):
    proc = run([docker, "exec", container, "python", "-c", _OCR], check=False, quiet=True,
               timeout=120)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_text(texts) -> None:
    joined = "".join(texts or []).replace(" ", "").upper()
    if "IMAGETEST" not in joined or "DOCKER" not in joined:
        raise Failure(f"the OCR answer does not read the page: {texts}")


def state(docker: str, container: str) -> dict:
    out = run([docker, "inspect", "-f", "{{json .State}}", container], quiet=True).stdout
    return json.loads(out)


def wait_healthy(docker: str, container: str, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        current = state(docker, container)
        if not current.get("Running"):
            logs = run([docker, "logs", container], check=False, quiet=True)
            raise Failure(f"{container} exited ({current.get('ExitCode')}):\n"
                          f"{(logs.stdout + logs.stderr)[-3000:]}")
        if (current.get("Health") or {}).get("Status") == "healthy":
            return time.monotonic() - started
        time.sleep(1)
    raise Failure(f"{container} not healthy after {timeout:.0f} s: {state(docker, container)}")


def stubs(docker: str, container: str, model: str):
    """Host pids of ``model``'s Python-backend stubs in ``container``."""
    out = run([docker, "top", container, "-eo", "pid,args"], quiet=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if "triton_python_backend_stub" in line and f"/{model}/" in line]


def docker_run(docker: str, name: str, image: str, *extra) -> None:
    # The README's docker run, with --network none in place of -p (see the module docstring).
    run([docker, "run", "-d", "--name", name, "--init", "--stop-timeout", str(STOP_TIMEOUT),
         "--shm-size=1g", "--network", "none", *extra, image])


def stop(docker: str, container: str, bound: float) -> float:
    started = time.monotonic()
    run([docker, "stop", "-t", str(STOP_TIMEOUT), container], timeout=STOP_TIMEOUT + 60)
    took = time.monotonic() - started
    code = state(docker, container).get("ExitCode")
    if code != 0:
        logs = run([docker, "logs", container], check=False, quiet=True)
        raise Failure(f"{container} stopped with exit code {code}:\n"
                      f"{(logs.stdout + logs.stderr)[-3000:]}")
    if took > bound:
        raise Failure(f"docker stop of {container} took {took:.1f} s (bound {bound:.0f} s)")
    return took


def check_bundled(docker: str, name: str) -> None:
    docker_run(docker, name, f"{TAG}:bundled")
    TIMES["bundled: healthy after (s)"] = round(wait_healthy(docker, name), 1)
    expected = ocr(docker, name)
    check_text(expected)
    log(f"OCR answer: {expected}")
    through_api = paddlex_ocr(docker, name)
    if through_api != expected:
        raise Failure(f"PaddleX's /ocr read {through_api}, the KServe call {expected}")
    log("PaddleX API /ocr: the same texts")
    # The stub running text recognition: its engine model's, or (--hosting graph, the
    # default on CPU) the OCR graph's, which runs its engines itself.
    model = "OCR_TextRecognition" if stubs(docker, name, "OCR_TextRecognition") else "OCR"
    (victim,) = stubs(docker, name, model)[:1]
    os.kill(victim, signal.SIGKILL)  # what the OOM killer does to a stub
    killed = time.monotonic()
    while time.monotonic() - killed < 90:
        current = stubs(docker, name, model)
        if current and victim not in current and ocr(docker, name) == expected:
            break
        time.sleep(0.5)
    else:
        raise Failure(f"{model} did not come back within 90 s of its stub's kill")
    TIMES["bundled: healed after (s)"] = round(time.monotonic() - killed, 1)
    logs = run([docker, "logs", name], quiet=True)
    if "serving again" not in logs.stdout + logs.stderr:
        raise Failure("serve's log does not say the model was reloaded")
    wait_healthy(docker, name, 60)
    TIMES["bundled: docker stop after the heal (s)"] = round(stop(docker, name, 15), 1)


def check_mounted(docker: str, name: str) -> None:
    docker_run(docker, name, f"{TAG}:runtime", "-v", f"{REPO}:/models:ro")
    TIMES["mounted: healthy after (s)"] = round(wait_healthy(docker, name), 1)
    check_text(ocr(docker, name))
    TIMES["mounted: docker stop (s)"] = round(stop(docker, name, 15), 1)


def main() -> int:
    python = os.environ.get("PYTHON") or sys.executable
    try:
        docker, daemon = ensure_daemon()
    except Skip as exc:
        print(f"SKIPPED image test: {exc}", flush=True)
        return 0
    names = [f"{TAG}-bundled-{os.getpid()}", f"{TAG}-mounted-{os.getpid()}"]
    code = 1
    try:
        base = base_image(docker)
        build_repository(python)
        build_images(docker, base)
        check_bundled(docker, names[0])
        check_mounted(docker, names[1])
        code = 0
    except (Failure, subprocess.TimeoutExpired) as exc:
        print(f"FAILED image test: {exc}", flush=True)
    finally:
        for name in names:
            run([docker, "rm", "-f", name], check=False, quiet=True)
        if not os.environ.get("HPI_IMAGE_TEST_KEEP"):
            run([docker, "rmi", "-f", f"{TAG}:bundled", f"{TAG}:runtime"], check=False,
                quiet=True)
        stop_daemon(daemon)
        TIMES["image test wall time (s)"] = round(time.monotonic() - T0)
        print(json.dumps(TIMES, indent=1), flush=True)
    if code == 0:
        print("PASSED image test", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
