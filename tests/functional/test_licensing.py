"""Licensing end to end with real crypto (``cryptography``), a real HTTP activation service
(the ``hpi-triton license server`` process) and the real CLI. Another device is simulated by
pointing ``HPI_TRITON_FINGERPRINT_ROOT`` at a folder with another machine-id."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hpi_triton.errors import LicensingError
from hpi_triton.licensing.issuer import BindingStore, Issuer, keygen, read_public
from hpi_triton.licensing.service import ActivationServer, request_json
from hpi_triton.python_backend.licensing import certificate as cert
from hpi_triton.python_backend.licensing import fingerprint as fp

pytestmark = pytest.mark.functional

CLI = [sys.executable, "-m", "hpi_triton.cli"]


def _cli(*args, env=None, check=True):
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_device(root: Path, machine_id: str) -> dict:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "machine-id").write_text(machine_id + "\n")
    return {"HPI_TRITON_FINGERPRINT_ROOT": str(root)}


@pytest.fixture(scope="module")
def issuer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vendor") / "issuer"
    _cli("license", "keygen", "--out", str(folder))
    return folder


class ServiceProcess:
    def __init__(self, issuer_dir: Path, db: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*CLI, "license", "server", "--key", str(issuer_dir),
                                      "--db", str(db), "--host", "127.0.0.1", "--port",
                                      str(self.port)], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if request_json(self.url + "/v1/health", timeout=2)["status"] == "ok":
                    return
            except LicensingError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("activation service did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_keygen_refuses_to_overwrite_and_public_pem_has_every_pipeline(issuer_dir):
    assert oct((issuer_dir / "private.pem").stat().st_mode & 0o777) == "0o600"
    public = read_public(issuer_dir / "public.pem")
    assert {"OCR", "seal_recognition", "table_recognition"} <= set(public.content)
    with pytest.raises(LicensingError, match="never overwrites"):
        keygen(issuer_dir)


def test_online_activation_restart_and_revocation(issuer_dir, tmp_path):
    serial = _cli("license", "issue", "--key", str(issuer_dir), "--pipeline", "OCR",
                  "--expires", "2099-12-31").stdout.split()[0]
    db = tmp_path / "licenses.db"
    licenses = tmp_path / "licenses"
    env = {"HPI_TRITON_LICENSE_DIR": str(licenses)}
    service = ServiceProcess(issuer_dir, db)
    try:
        out = _cli("license", "activate", "--serial", serial, "--server", service.url, env=env)
        assert f"{serial}.lic" in out.stdout
        # The same device again: its certificate again.
        _cli("license", "activate", "--serial", serial, "--server", service.url, env=env)
        # Another device: refused, with the reason.
        other = _cli("license", "activate", "--serial", serial, "--server", service.url,
                     env={**env, **fake_device(tmp_path / "other", "0" * 32)}, check=False)
        assert other.returncode == 2 and "already activated on another device" in other.stderr
    finally:
        service.stop()
    # Restarted: the binding is still there.
    service = ServiceProcess(issuer_dir, db)
    try:
        again = _cli("license", "activate", "--serial", serial, "--server", service.url,
                     env={**env, **fake_device(tmp_path / "other", "0" * 32)}, check=False)
        assert "already activated on another device" in again.stderr
        _cli("license", "revoke", serial, "--key", str(issuer_dir), "--db", str(db))
        revoked = _cli("license", "activate", "--serial", serial, "--server", service.url,
                       env=env, check=False)
        assert "revoked" in revoked.stderr
        assert serial in request_json(service.url + "/v1/revocations")["payload"]["serials"]
    finally:
        service.stop()
    document = json.loads((licenses / f"{serial}.lic").read_text())
    public = _public_key(issuer_dir)
    payload = cert.check_certificate(document, public, "OCR", fp.device_fingerprint())
    assert payload["serial"] == serial and payload["expires"] == "2099-12-31"


def _public_key(issuer_dir: Path):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(
        read_public(issuer_dir / "public.pem").signing_pem.encode())


def test_offline_activation(issuer_dir, tmp_path):
    serial = _cli("license", "issue", "--key", str(issuer_dir), "--pipeline",
                  "table_recognition").stdout.strip()
    request = _cli("license", "fingerprint", "--serial", serial).stdout
    (tmp_path / "request.json").write_text(request)
    assert json.loads(request)["fingerprint"] == fp.device_fingerprint()
    signed = _cli("license", "sign", str(tmp_path / "request.json"), "--key", str(issuer_dir),
                  "--db", str(tmp_path / "db.sqlite")).stdout
    licenses = tmp_path / "licenses"
    licenses.mkdir()
    (licenses / "cert.lic").write_text(signed)
    found = cert.find_certificate("table_recognition", _public_key(issuer_dir),
                                  fp.device_fingerprint(), str(licenses))
    assert found["payload"]["serial"] == serial
    # A request edited by hand is refused with the field named.
    (tmp_path / "bad.json").write_text(json.dumps({"serial": serial, "fingerprint": "xyz"}))
    bad = _cli("license", "sign", str(tmp_path / "bad.json"), "--key", str(issuer_dir),
               check=False)
    assert bad.returncode == 2 and "field 'fingerprint'" in bad.stderr


def test_fifty_concurrent_activations_bind_exactly_one(issuer_dir, tmp_path):
    issuer = Issuer(issuer_dir)
    (serial,) = issuer.issue("OCR")
    service = ActivationServer(issuer, BindingStore(str(tmp_path / "c.db")), "127.0.0.1", 0,
                               rate=1000, burst=1000).start()
    fingerprints = [f"{i:064x}" for i in range(50)]

    def attempt(fingerprint):
        try:
            return request_json(service.url + "/v1/activate",
                                {"serial": serial, "fingerprint": fingerprint})
        except LicensingError as exc:
            return str(exc)

    try:
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(attempt, fingerprints))
    finally:
        service.stop()
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 1
    assert all("another device" in r for r in results if isinstance(r, str)), \
        {r for r in results if isinstance(r, str)}
    assert BindingStore(str(tmp_path / "c.db")).bind(serial, fingerprints[0]) == \
        won[0]["payload"]["fingerprint"]


def test_service_validates_and_rate_limits(issuer_dir, tmp_path):
    service = ActivationServer(Issuer(issuer_dir), BindingStore(str(tmp_path / "v.db")),
                               "127.0.0.1", 0, rate=0.01, burst=5).start()
    try:
        with pytest.raises(LicensingError, match="field 'serial'.*HTTP 400"):
            request_json(service.url + "/v1/activate", {"serial": "x", "fingerprint": "0" * 64})
        with pytest.raises(LicensingError, match="not issued by this issuer.*HTTP 404"):
            request_json(service.url + "/v1/activate",
                         {"serial": "HPI-AAAAA-AAAAA-AAAAA-AAAAA", "fingerprint": "0" * 64})
        codes = []
        for _ in range(5):
            try:
                request_json(service.url + "/v1/health")
                codes.append(200)
            except LicensingError as exc:
                codes.append(429 if "HTTP 429" in str(exc) else 0)
        assert 429 in codes
    finally:
        service.stop()


def test_each_bad_certificate_has_its_own_reason(issuer_dir, tmp_path):
    issuer = Issuer(issuer_dir)
    public = _public_key(issuer_dir)
    here = fp.device_fingerprint()
    (serial,) = issuer.issue("OCR", expires="2099-01-01")
    good = issuer.certificate(issuer.serials()[serial], here)

    def reason(document, pipeline="OCR", fingerprint=here, revoked=()):
        with pytest.raises(cert.LicenseError) as info:
            cert.check_certificate(document, public, pipeline, fingerprint, revoked)
        return info.value.reason, str(info.value)

    assert cert.check_certificate(good, public, "OCR", here)["serial"] == serial
    tampered = copy.deepcopy(good)
    tampered["payload"]["expires"] = "2199-01-01"
    assert reason(tampered)[0] == "bad-signature"
    expired = issuer.certificate({**issuer.serials()[serial], "expires": "2001-01-01"}, here)
    assert reason(expired) == ("expired", f"certificate {serial} expired on 2001-01-01")
    assert reason(good, fingerprint="f" * 64)[0] == "other-device"
    assert reason(good, pipeline="table_recognition")[0] == "other-pipeline"
    assert reason(good, revoked=[serial])[0] == "revoked"
    other_issuer = Issuer(keygen(tmp_path / "other-issuer"))
    forged = other_issuer.certificate({**issuer.serials()[serial]}, here)
    assert reason(forged)[0] == "bad-signature"
    # The content key opens only on the device it was sealed to.
    sealed = good["payload"]["content_key"]
    assert len(cert.open_for_device(sealed, here, serial)) == 32
    with pytest.raises(cert.LicenseError, match="does not open on this device"):
        cert.open_for_device(sealed, "f" * 64, serial)


def test_postgresql_bindings(issuer_dir, tmp_path):
    """The same service on PostgreSQL (a real server from the pgserver wheel)."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path / "pg"), cleanup_mode="stop")
    try:
        url = server.get_uri()
        issuer = Issuer(issuer_dir)
        (serial,) = issuer.issue("OCR")
        service = ActivationServer(issuer, BindingStore(url), "127.0.0.1", 0, rate=1000,
                                   burst=1000).start()

        def attempt(i):
            try:
                return request_json(service.url + "/v1/activate",
                                    {"serial": serial, "fingerprint": f"{i:064x}"})
            except LicensingError as exc:
                return str(exc)

        try:
            with ThreadPoolExecutor(50) as pool:
                results = list(pool.map(attempt, range(50)))
        finally:
            service.stop()
        won = [r for r in results if isinstance(r, dict)]
        assert len(won) == 1, {r for r in results if isinstance(r, str)}
        # A new connection (a restarted service) sees the binding; revocation is stored too.
        again = BindingStore(url)
        assert again.bind(serial, "f" * 64) == won[0]["payload"]["fingerprint"]
        again.revoke(serial)
        assert BindingStore(url).is_revoked(serial)
    finally:
        server.cleanup()
