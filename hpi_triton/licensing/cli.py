"""``hpi-triton license ...``: the issuer's and the customer's licensing commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from hpi_triton.errors import HpiTritonError, LicensingError

license_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Serial numbers, activation and "
                                                     "certificates for licensed repositories.")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _db(key: Path, db: Optional[str]) -> str:
    return db or str(Path(key) / "licenses.db")


@license_app.command()
def keygen(out: Path = typer.Option(..., "--out", help="Issuer folder to create")):
    """Create an issuer: Ed25519 signing key, content-key seed and public.pem."""
    from hpi_triton.licensing.issuer import keygen as make

    try:
        folder = make(out)
    except HpiTritonError as exc:
        _fail(exc)
    typer.echo(f"issuer keys in {folder}; give {folder / 'public.pem'} to hpi-triton build "
               f"--license, keep private.pem and content.seed secret")


@license_app.command()
def issue(key: Path = typer.Option(..., "--key", help="Issuer folder"),
          pipeline: str = typer.Option(..., "--pipeline", help="Pipeline the serials unlock"),
          expires: Optional[str] = typer.Option(None, "--expires", help="YYYY-MM-DD"),
          count: int = typer.Option(1, "--count")):
    """Issue serial numbers (one per line on stdout; recorded in KEY/serials.jsonl)."""
    from hpi_triton.licensing.issuer import Issuer

    try:
        for serial in Issuer(key).issue(pipeline, count, expires):
            typer.echo(serial)
    except HpiTritonError as exc:
        _fail(exc)


@license_app.command()
def server(key: Path = typer.Option(..., "--key", help="Issuer folder"),
           db: Optional[str] = typer.Option(None, "--db", help="SQLite file or postgresql:// "
                                            "URL [KEY/licenses.db]"),
           host: str = typer.Option("0.0.0.0", "--host"),
           port: int = typer.Option(8470, "--port"),
           rate: float = typer.Option(20.0, "--rate", help="requests/s per client"),
           burst: int = typer.Option(100, "--burst", help="requests at once per client")):
    """Run the activation service (HTTP/JSON) until Ctrl-C."""
    from hpi_triton.licensing.issuer import BindingStore, Issuer
    from hpi_triton.licensing.service import ActivationServer

    try:
        service = ActivationServer(Issuer(key), BindingStore(_db(key, db)), host, port, rate,
                                   burst)
    except (HpiTritonError, OSError) as exc:
        _fail(exc)
    typer.echo(f"activation service on {service.url} (POST /v1/activate, GET /v1/revocations)",
               err=True)
    try:
        service.serve_forever()
    except KeyboardInterrupt:
        service.stop()


@license_app.command()
def sign(request: Path = typer.Argument(..., help="request.json from license fingerprint"),
         key: Path = typer.Option(..., "--key", help="Issuer folder"),
         db: Optional[str] = typer.Option(None, "--db", help="Bindings [KEY/licenses.db]")):
    """Offline activation: bind the request's serial and print its certificate."""
    from hpi_triton.licensing.issuer import BindingStore, Issuer, activate

    try:
        body = json.loads(request.read_text())
        typer.echo(json.dumps(activate(Issuer(key), BindingStore(_db(key, db)), body), indent=1))
    except (OSError, ValueError) as exc:
        _fail(LicensingError(f"{request}: not a readable JSON request ({exc})"))
    except HpiTritonError as exc:
        _fail(exc)


@license_app.command()
def revoke(serial: str = typer.Argument(...),
           key: Path = typer.Option(..., "--key", help="Issuer folder"),
           db: Optional[str] = typer.Option(None, "--db", help="Bindings [KEY/licenses.db]")):
    """Revoke a serial: no more certificates for it, and it joins the revocation list."""
    from hpi_triton.licensing.issuer import BindingStore, Issuer

    try:
        if serial not in Issuer(key).serials():
            raise LicensingError(f"serial {serial} was not issued by this issuer")
        BindingStore(_db(key, db)).revoke(serial)
    except HpiTritonError as exc:
        _fail(exc)
    typer.echo(f"revoked {serial}")


@license_app.command()
def revocations(key: Path = typer.Option(..., "--key", help="Issuer folder"),
                db: Optional[str] = typer.Option(None, "--db", help="[KEY/licenses.db]")):
    """Print the signed revocation list (customers put it in their licenses folder)."""
    from hpi_triton.licensing.issuer import BindingStore, Issuer

    try:
        issuer = Issuer(key)
        typer.echo(json.dumps(issuer.revocation_list(BindingStore(_db(key, db)).revoked())))
    except HpiTritonError as exc:
        _fail(exc)


@license_app.command()
def fingerprint(serial: Optional[str] = typer.Option(None, "--serial"),
                explain: bool = typer.Option(False, "--explain",
                                             help="show the sources instead")):
    """Print this machine's activation request (offline activation) or its sources."""
    from hpi_triton.python_backend.licensing import fingerprint as fp

    try:
        if explain:
            typer.echo(json.dumps(fp.sources(), indent=1))
            return
        if not serial:
            raise LicensingError("--serial is required (the serial you were given)")
        typer.echo(json.dumps({"serial": serial, "fingerprint": fp.device_fingerprint()}))
    except (HpiTritonError, fp.FingerprintError) as exc:
        _fail(exc)


@license_app.command()
def activate(serial: str = typer.Option(..., "--serial"),
             server_url: str = typer.Option(..., "--server", help="http://HOST:PORT"),
             license_dir: Optional[Path] = typer.Option(
                 None, "--license-dir", help="[$HPI_TRITON_LICENSE_DIR or "
                 "~/.hpi-triton/licenses]")):
    """Online activation: get this machine's certificate and the revocation list."""
    from hpi_triton.licensing.service import request_json
    from hpi_triton.python_backend.licensing import certificate
    from hpi_triton.python_backend.licensing import fingerprint as fp

    try:
        body = {"serial": serial, "fingerprint": fp.device_fingerprint()}
        document = request_json(server_url.rstrip("/") + "/v1/activate", body)
        revoked = request_json(server_url.rstrip("/") + "/v1/revocations")
        folder = Path(license_dir or certificate.license_dir())
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{serial}.lic"
        _write_atomic(target, json.dumps(document, indent=1))
        _write_atomic(folder / "revocations.json", json.dumps(revoked))
    except (HpiTritonError, fp.FingerprintError) as exc:
        _fail(exc)
    typer.echo(f"activated {serial}: certificate saved to {target}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
