"""``mdk``: the kit's command line (config checks, bundles, the local server, example models)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mdk.config import DEFAULT_CONFIG, ConfigError, KitConfig, ModelConfig, load_config

if TYPE_CHECKING:
    from mdk.ops.client import Run
    from mdk_runtime.model import WarmUp
    from mdk_runtime.schema import Signature

app = typer.Typer(
    help="mdk, the Model Deployment Kit: ONNX models to AWS Lambda and SageMaker, tested offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Check the model config.", no_args_is_help=True)
app.add_typer(config_app, name="config")
batch_app = typer.Typer(
    help="Batch: run a file locally (run), or through the deployed pipeline (submit, status).",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")


def _local_app() -> typer.Typer:
    from mdk.local.cloud.cli import local_app

    return local_app


app.add_typer(_local_app(), name="local")

out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the model config file", show_default=True)
]
BUNDLES_DIR = Path("build") / "bundles"


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit status 2."""


def _load(path: Path) -> KitConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _pick(config: KitConfig, name: str | None) -> ModelConfig:
    if name is None:
        return config.default
    try:
        return config.model(name)
    except KeyError:
        names = ", ".join(m.name for m in config.models)
        raise CliError(f"unknown model {name!r} (models in the config: {names})") from None


@config_app.command("validate")
def validate(config: ConfigOption = Path(DEFAULT_CONFIG)) -> None:
    """Validate the config and every model artifact it names; list the models."""
    kit = _load(config)
    table = Table(title=f"{config}: {len(kit.models)} model(s), project {kit.project!r}")
    for column in ("name", "runtime", "artifact", "version", "where"):
        table.add_column(column)
    from mdk.bundle import model_spec

    for model in kit.models:
        spec = model_spec(model)
        where = (
            f"{model.lambda_.memory_mb} MB {model.lambda_.architecture}"
            if model.runtime == "lambda"
            else f"{model.sagemaker.instance_type} x{model.sagemaker.initial_instance_count}"
        )
        artifact = model.artifact
        shown = artifact.relative_to(Path.cwd()) if artifact.is_relative_to(Path.cwd()) else artifact
        table.add_row(model.name, model.runtime, str(shown), spec.version, where)
    out.print(table)
    out.print("[green]config is valid[/green]")


@app.command()
def bundle(
    name: Annotated[str, typer.Argument(help="model name from the config")],
    dest: Annotated[Path | None, typer.Option("--out", "-o", help="bundle directory")] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Write a model bundle (model.onnx + mdk-model.json), what the images bake in."""
    from mdk.bundle import write_bundle

    model = _pick(_load(config), name)
    path = write_bundle(model, dest or BUNDLES_DIR / model.name)
    out.print(f"bundle written: {path}")


# An example body up to this size is printed inline; a larger one is written by a python3 one-liner.
EXAMPLE_INLINE_BYTES = 4096
# A synthetic body larger than this is not offered: it would not fit Lambda's 6 MB request payload.
EXAMPLE_MAX_BYTES = 5_000_000


class NoExample(Exception):
    """The model has no example request and none can be made up: the message says what to add."""


def _python_zeros(signature: Signature, size: int) -> str:
    """A python3 (standard library only) program that writes the synthetic request body to stdout."""
    from mdk_runtime.schema import synthetic_shapes

    shapes = synthetic_shapes(signature, size, 1)
    items = []
    for s in signature.inputs:
        shape = list(shapes[s.graph_name][1:] if signature.batched else shapes[s.graph_name])
        kind = s.dtype.kind if s.dtype is not None else "f"
        leaf = '""' if kind == "O" else ("False" if kind == "b" else "0")
        items.append((json.dumps(s.name), f"z({shape},{leaf})"))
    item = items[0][1] if len(items) == 1 else "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    return (
        "import json,sys;z=lambda s,v:[z(s[1:],v)]*s[0] if s else v;"
        f'json.dump({{"instances":[{item}]}},sys.stdout,separators=(",",":"))'
    )


def example_data(
    example: Any, signature: Signature | None = None, warm: WarmUp | None = None
) -> tuple[str, str]:
    """How a printed curl line sends the model's example request: (a command piped into curl, or "";
    curl's data option).

    The config's ``example`` when there is one; else the synthetic request the warm-up ran on (inline if
    small, written by a python3 one-liner if not).  NoExample says what to add when there is neither.
    """
    if example is not None:
        return "", f"-d {shlex.quote(json.dumps(example, separators=(',', ':')))}"
    if signature is None or warm is None or warm.size is None:
        why = warm.error if warm is not None and warm.error else "no synthetic request was tried"
        raise NoExample(f"this model has no example request, and {why}")
    request = warm.request(signature)
    body = json.dumps(request, separators=(",", ":"))
    if len(body) <= EXAMPLE_INLINE_BYTES:
        return "", f"-d {shlex.quote(body)}"
    if len(body) > EXAMPLE_MAX_BYTES:
        raise NoExample(
            f"this model has no example request, and one of zeros would be {len(body) / 1e6:.1f} MB of "
            "JSON, more than a request may carry; add `example:` (a request that works, inline or a JSON "
            "file) to this model in the config (models.yaml), or send its input as application/x-npy"
        )
    return f"python3 -c {shlex.quote(_python_zeros(signature, warm.size))} | ", "--data-binary @-"


def curl_example(
    base_url: str,
    name: str,
    example: Any,
    *,
    signature: Signature | None = None,
    warm: WarmUp | None = None,
    model: ModelConfig | None = None,
) -> str:
    """A curl line that predicts with the example request, or a ``#`` line saying why there is none.

    With ``model``, a processed model's example file (an image, a text) is sent as its clients send it."""
    from mdk.bundle import example_content_type, raw_example

    kind = "application/json"
    try:
        if model is not None and raw_example(model):
            assert isinstance(model.example, Path)
            shown = (
                model.example.relative_to(Path.cwd())
                if model.example.is_relative_to(Path.cwd())
                else model.example
            )
            pipe, data, kind = "", f"--data-binary @{shlex.quote(str(shown))}", example_content_type(model)
        else:
            pipe, data = example_data(example, signature, warm)
    except NoExample as exc:
        return f"# {exc}"
    from mdk_runtime.routes import PREDICT, model_path

    url = base_url + model_path(name, PREDICT.action)
    return f"{pipe}curl -s -X {PREDICT.method} {url} -H 'content-type: {kind}' {data}"


@app.command()
def serve(
    name: Annotated[str | None, typer.Argument(help="model to serve (default: the config's default)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8080,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Serve one model locally with the same app the Lambda function runs (Ctrl-C stops it)."""
    import uvicorn

    from lambda_handlers.api import create_app
    from mdk.bundle import write_bundle
    from mdk_runtime import routes
    from mdk_runtime.service import InferenceService, Settings

    model = _pick(_load(config), name)
    bundle_dir = write_bundle(model, BUNDLES_DIR / model.name)
    service = InferenceService.load(Settings(model_dir=bundle_dir))
    if service.model is None:
        assert service.load_error is not None
        raise CliError(f"model {model.name!r} failed to load: {service.load_error.message}")
    base = f"http://{host}:{port}"
    example = service.model.spec.example
    warm = service.report.warm if service.report is not None else None
    out.print(f"[bold]mdk[/bold] serving model [bold]{model.name}[/bold] version {service.version} at {base}")
    for route in (routes.METADATA, routes.HEALTH):
        out.print(f"  {route.action + ':':<9} curl -s {base}{routes.model_path(model.name, route.action)}")
    out.print(f"  docs:     {base}/docs")
    out.print("  predict:")
    line = curl_example(base, model.name, example, signature=service.model.signature, warm=warm, model=model)
    out.print(line, soft_wrap=True, highlight=False, markup=False)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # listening now: the examples above work from this line on
                out.print("ready; Ctrl-C stops the server", style="green")

    server = Server(
        uvicorn.Config(create_app(service), host=host, port=port, log_level="warning", access_log=False)
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()  # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
    if not server.started:
        raise CliError(f"could not listen on {host}:{port} (see the message above)")
    out.print("stopped")


@batch_app.command("run")
def batch_run(
    file: Annotated[Path, typer.Argument(help="records: .jsonl, .ndjson or .csv (optionally .gz)")],
    name: Annotated[
        str | None, typer.Option("--model", "-m", help="model (default: the config's default)")
    ] = None,
    results: Annotated[Path, typer.Option(help="where results/<model>/<run>/ go")] = Path("build")
    / "results",
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Score a file as a SageMaker batch transform would, with the kit's serving container, locally.

    The same checks, request packing, per-record errors and status manifest as the deployed pipeline;
    exits 1 unless every line was accounted for.
    """
    from mdk.local.transform import run_file

    model = _pick(_load(config), name)
    if not file.is_file():
        raise CliError(f"FILE: not found: {file}")
    if not model.batch.enabled:
        raise CliError(f"model {model.name!r} has batch.enabled: false in the config")
    local = run_file(model, file, results, bundle_dir=BUNDLES_DIR / model.name)
    manifest = local.manifest
    source, output = manifest.input, manifest.output or {}
    style = "green" if manifest.state == "Completed" else "red"
    out.print(f"[{style}]{manifest.state}[/{style}]: {manifest.message}", highlight=False)
    for error in manifest.errors:
        out.print(f"  {error['field']}: {error['message']}", highlight=False)
    if output:
        out.print(
            f"  input lines {source.get('lines')}, output lines {output.get('lines')}, "
            f"errors {output.get('error_lines')} {output.get('errors_by_code') or ''}",
            highlight=False,
        )
        for path in output.get("files", []):
            out.print(f"  output:   {path}", highlight=False)
    out.print(f"  manifest: {local.path}", highlight=False)
    if manifest.state != "Completed":
        raise typer.Exit(1)


@app.command()
def stacks(
    model: Annotated[str | None, typer.Argument(help="one model: its stack only")] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    stage: Annotated[
        str, typer.Option("--stage", envvar="MDK_STAGE", help="the stage (cdk -c stage=...)")
    ] = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Name the deployment's stacks: the shared one, one per model (``cdk deploy -e <stack>`` rolls out
    one model alone), and the consumers' access stack."""
    from mdk import layout

    try:
        kit = load_config(config, check_models=False)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    names = {m.name: layout.model_stack(kit.project, stage, m.name) for m in kit.models}
    if model is not None:
        _pick(kit, model)
        if as_json:
            _print_json({"model": model, "stack": names[model]})
        else:
            out.print(names[model], highlight=False, soft_wrap=True)
        return
    shared = layout.shared_stack(kit.project, stage)
    access = layout.access_stacks(kit.project, stage, len(kit.consumers))
    if as_json:
        _print_json({"shared": shared, "models": names, "access": access})
        return
    table = Table(title=f"{config}: stacks of stage {stage!r}")
    for column in ("stack", "holds", "deploy alone"):
        table.add_column(column)
    table.add_row(shared, "alarms, storage, batch, WAF", f"npx cdk deploy -e -c stage={stage} {shared}")
    for name, stack in names.items():
        table.add_row(stack, f"model {name}", f"npx cdk deploy -e -c stage={stage} {stack}")
    for stack in access:
        table.add_row(
            stack, "consumers' keys and plans, or app clients", f"npx cdk deploy -e -c stage={stage} {stack}"
        )
    out.print(table)


@app.command()
def examples(
    force: Annotated[bool, typer.Option("--force", help="rebuild models that already exist")] = False,
) -> None:
    """Build the example models (iris v1/v2, digits) from scikit-learn's bundled data sets."""
    from mdk import examples as builder

    builder.main(["--force"] if force else [])


# ------------------------------------------------------------------------------------------------
# Operating a deployment (AWS, or whatever AWS_ENDPOINT_URL names: a moto server, the local cloud)
# ------------------------------------------------------------------------------------------------

StageOption = Annotated[
    str, typer.Option("--stage", envvar="MDK_STAGE", help="the deployment's stage (cdk -c stage=...)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
shadow_app = typer.Typer(help="Shadow-test a candidate version against live traffic.", no_args_is_help=True)
app.add_typer(shadow_app, name="shadow")


def _ops(config: Path, stage: str) -> Any:
    from mdk.ops.context import Ops

    try:
        project = load_config(config, check_models=False).project
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return Ops(project=project, stage=stage)


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="one model (default: every deployed model)")] = None,
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """What serves each model's traffic now: versions or variants and weights, deployments, alarms."""
    from mdk.ops import render, traffic

    ops = _ops(config, stage)
    names = [name] if name else ops.model_names()
    if not names:
        ops.deployed("-")  # raises the "no deployment" error with its hints
    render.status(out, [traffic.status(ops, n) for n in names], as_json=as_json)


@app.command()
def rollout(
    name: Annotated[str, typer.Argument(help="the model")],
    to: Annotated[str, typer.Option("--to", help="Lambda version (or SageMaker variant) to send traffic to")],
    percent: Annotated[float, typer.Option("--percent", help="its share of the traffic, 0 < P <= 100")],
    force: Annotated[bool, typer.Option(help="even while a CodeDeploy deployment is in flight")] = False,
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Shift a share of the traffic to another version by hand (the alias's or endpoint's weights)."""
    from mdk.ops import render, traffic

    render.result(out, traffic.rollout(_ops(config, stage), name, to, percent, force=force), as_json=as_json)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="the model")],
    variant: Annotated[str | None, typer.Option(help="SageMaker: the variant to promote")] = None,
    force: Annotated[bool, typer.Option(help="even while one of the model's alarms is in ALARM")] = False,
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Give the candidate all the traffic (refused while an alarm is in ALARM)."""
    from mdk.ops import render, traffic

    result = traffic.promote(_ops(config, stage), name, variant=variant, force=force)
    render.result(out, result, as_json=as_json)


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="the model")],
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Back to the last good version now: stops a deployment in flight, moves the alias or weights."""
    from mdk.ops import render, traffic

    result = traffic.rollback(_ops(config, stage), name)
    render.result(out, result, as_json=as_json)
    if result.warning:
        err.print(f"[yellow]warning:[/yellow] {result.warning}", highlight=False)
        raise typer.Exit(1)


@shadow_app.command("start")
def shadow_start(
    name: Annotated[str, typer.Argument(help="the model")],
    candidate: Annotated[str, typer.Option(help="Lambda version (SageMaker: model name) to shadow")],
    sample: Annotated[float, typer.Option(help="fraction of requests mirrored, 0 < S <= 1")] = 0.1,
    instance_type: Annotated[str | None, typer.Option(help="SageMaker: the shadow's instances")] = None,
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Mirror a sample of live requests to a candidate, which compares its answers with the live ones."""
    from mdk.ops import render, shadow

    result = shadow.start(_ops(config, stage), name, candidate, sample, instance_type=instance_type)
    render.result(out, result, as_json=as_json)


@shadow_app.command("stop")
def shadow_stop(
    name: Annotated[str, typer.Argument(help="the model")],
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Stop mirroring."""
    from mdk.ops import render, shadow

    render.result(out, shadow.stop(_ops(config, stage), name), as_json=as_json)


@shadow_app.command("report")
def shadow_report(
    name: Annotated[str, typer.Argument(help="the model")],
    hours: Annotated[float, typer.Option(help="how far back")] = 24.0,
    candidate: Annotated[str | None, typer.Option(help="default: the running shadow's")] = None,
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Agreement rate, largest difference and latencies of the candidate against live."""
    from mdk.ops import render, shadow

    result = shadow.report(_ops(config, stage), name, hours=hours, candidate=candidate)
    render.shadow_report(out, result, as_json=as_json)


@app.command()
def predict(
    name: Annotated[str, typer.Argument(help="the model")],
    data: Annotated[str, typer.Option("--data", "-d", help="request file (.json or .npy), or - for stdin")],
    api_key: Annotated[str | None, typer.Option(envvar="MDK_API_KEY", help="for api_key auth")] = None,
    token: Annotated[str | None, typer.Option(envvar="MDK_ID_TOKEN", help="for cognito auth")] = None,
    stage: StageOption = "dev",
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Call the deployed model's API (SigV4-signed with your AWS credentials under IAM auth)."""
    from mdk.ops import client

    if data == "-":
        body, path = sys.stdin.buffer.read(), None
    else:
        path = data
        try:
            body = Path(data).read_bytes()
        except OSError as exc:
            raise CliError(f"--data: cannot read {data}: {exc.strerror}") from None
    answer = client.predict(
        _ops(config, stage),
        name,
        body,
        content_type=client.content_type_for(path),
        api_key=api_key,
        token=token,
    )
    text = answer.body.decode(errors="replace")
    if answer.status >= 400:
        err.print(f"[red]HTTP {answer.status}[/red] {text}", highlight=False)
        raise typer.Exit(1)
    out.print(text, highlight=False, soft_wrap=True)


@batch_app.command("submit")
def batch_submit(
    name: Annotated[str, typer.Argument(help="the model")],
    file: Annotated[Path, typer.Argument(help="records: .jsonl, .ndjson or .csv (optionally .gz)")],
    wait: Annotated[bool, typer.Option(help="wait for the run's manifest")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 3600.0,
    stage: StageOption = "dev",
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Upload a file to the model's batch inbox and follow its run to the manifest."""
    from mdk.ops import client

    ops = _ops(config, stage)
    upload = client.submit(ops, name, file)
    out.print(f"uploaded s3://{upload['bucket']}/{upload['key']} (version {upload['version_id']})")
    if not wait:
        return
    with out.status("waiting for the run ...") as spinner:
        found = client.wait(
            ops, name, upload, timeout_s=timeout, progress=lambda text: spinner.update(f"run: {text}")
        )
    _print_run(found)
    if found.manifest.state != "Completed":
        raise typer.Exit(1)


@batch_app.command("status")
def batch_status(
    run: Annotated[str | None, typer.Argument(help="a run id (default: the model's recent runs)")] = None,
    name: Annotated[str, typer.Option("--model", "-m", help="the model")] = "",
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """A run's manifest, or the model's recent runs."""
    from mdk.ops import client

    ops = _ops(config, stage)
    if not name:
        raise CliError("--model: name the model whose runs to show")
    if run is not None:
        one = client.run(ops, name, run)
        if as_json:
            _print_json(one.to_json())
        else:
            _print_run(one)
        return
    found = client.runs(ops, name)
    if as_json:
        _print_json([r.to_json() for r in found])
        return
    table = Table(title=f"{name}: recent batch runs", title_justify="left")
    for column in ("run", "state", "input", "lines", "errors", "updated"):
        table.add_column(column)
    for manifest in (r.manifest for r in found):
        source, output = manifest.input, manifest.output or {}
        table.add_row(
            manifest.run_id,
            manifest.state,
            str(source.get("key", "")),
            str(source.get("lines", "")),
            str(output.get("error_lines", "")),
            manifest.updated,
        )
    out.print(table)


def _print_run(found: Run) -> None:
    manifest = found.manifest
    style = "green" if manifest.state == "Completed" else "red"
    out.print(f"[{style}]{manifest.state}[/{style}] {manifest.run_id}: {manifest.message}")
    for error in manifest.errors:
        out.print(f"  {error['field']}: {error['message']}", highlight=False)
    output = manifest.output or {}
    for uri in output.get("files", []) or []:
        out.print(f"  output:   {uri}", highlight=False)
    if manifest.store:
        out.print(f"  store:    {manifest.store}", highlight=False)
    out.print(f"  manifest: {found.uri}", highlight=False)


@app.command()
def baseline(
    name: Annotated[str, typer.Argument(help="the model")],
    data: Annotated[Path, typer.Argument(help="a sample: .csv, .jsonl, .json (a predict request) or .npy")],
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="default: baseline.json next to the artifact")
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Compute a model's baseline (feature and output distributions) for the monitor's drift job."""
    from mdk.quality import BaselineError, compute_baseline, default_out, write_baseline

    model = _pick(_load(config), name)
    try:
        doc = compute_baseline(model, data)
    except BaselineError as exc:
        raise CliError(exc.message) from None
    written = write_baseline(doc, out_path or default_out(model))
    out.print(
        f"baseline of [bold]{model.name}[/bold] version {doc['version']}: {doc['rows']} rows, "
        f"{len(doc['features'])} features, output {doc['output']['kind']} -> {written}",
        highlight=False,
    )
    out.print(f"set models[].monitor.baseline: {written} in {config}", highlight=False)


capture_app = typer.Typer(help="What the deployment captured (with its feedback).", no_args_is_help=True)
app.add_typer(capture_app, name="capture")
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url", help="an AWS endpoint (a moto server, the local cloud); else AWS_ENDPOINT_URL"
    ),
]
BucketOption = Annotated[
    str | None,
    typer.Option(help="the capture bucket (default: $MDK_CAPTURE_BUCKET, else the stack's export)"),
]


def _monitor_ops(config: Path, stage: str, endpoint_url: str | None) -> Any:
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url  # boto3 honours it for every client the command makes
    return _ops(config, stage)


@capture_app.command("export")
def capture_export(
    name: Annotated[str, typer.Argument(help="the model")],
    since: Annotated[str, typer.Option(help="a duration (24h, 30m, 7d) or an ISO 8601 time")] = "24h",
    out_path: Annotated[Path, typer.Option("--out", "-o", help=".jsonl, or .parquet (needs pyarrow)")] = Path(
        "capture.jsonl"
    ),
    bucket: BucketOption = None,
    table: Annotated[
        str | None, typer.Option(help="the feedback table (default: $MDK_FEEDBACK_TABLE, else the export)")
    ] = None,
    endpoint_url: EndpointOption = None,
    stage: StageOption = "dev",
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """Captured predictions with their feedback joined, one line per instance."""
    from datetime import UTC, datetime

    from mdk import quality

    ops = _monitor_ops(config, stage, endpoint_url)
    now = datetime.now(UTC)
    try:
        start = quality.parse_since(since, now)
        found = quality.capture_bucket(ops, bucket)
        feedback = quality.feedback_table(ops, table)
        rows = ops.attempt(
            "reading captures and feedback",
            lambda: quality.export_rows(
                ops.client("s3"),
                ops.client("dynamodb"),
                model=name,
                bucket=found,
                table=feedback,
                since=start,
                now=now,
            ),
        )
        quality.write_rows(rows, out_path)
    except quality.BaselineError as exc:
        raise CliError(exc.message) from None
    joined = sum(r["label"] is not None or r["value"] is not None for r in rows)
    out.print(
        f"{len(rows)} captured instances of {name} ({joined} with feedback) -> {out_path}", highlight=False
    )


@app.command("quality")
def quality_report(
    name: Annotated[str, typer.Argument(help="the model")],
    png: Annotated[
        Path | None, typer.Option(help="also draw quality and drift over time (needs matplotlib)")
    ] = None,
    bucket: BucketOption = None,
    endpoint_url: EndpointOption = None,
    stage: StageOption = "dev",
    as_json: JsonOption = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    """The monitor job's runs: live quality, feedback coverage and drift, per version."""
    from rich.table import Table

    from mdk import quality

    ops = _monitor_ops(config, stage, endpoint_url)
    try:
        found = quality.capture_bucket(ops, bucket)
        summaries = ops.attempt(
            "reading the monitor's runs",
            lambda: quality.run_summaries(ops.client("s3"), model=name, bucket=found),
        )
        rows = quality.summary_rows(summaries)
        if as_json:
            _print_json(rows)
        else:
            table = Table(title=f"{name}: monitor runs (s3://{found}/monitor/{name}/runs/)")
            for column in ("time", "version", "accuracy / MAE", "coverage", "captured", "drift max", "worst"):
                table.add_column(column)

            def fmt(value: Any) -> str:
                return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

            for row in rows:
                figure = row["accuracy"] if row["accuracy"] is not None else row["mae"]
                table.add_row(
                    str(row["time"]),
                    str(row["version"]),
                    fmt(figure),
                    fmt(row["coverage"]),
                    fmt(row["captured"]),
                    fmt(row["drift_max"]),
                    fmt(row["worst"]),
                )
            out.print(table)
            if not rows:
                out.print("no runs yet: the monitor job writes one every monitor.every_minutes")
        if png is not None:
            quality.quality_png(summaries, png)
            out.print(f"chart -> {png}", highlight=False)
    except quality.BaselineError as exc:
        raise CliError(exc.message) from None


def main() -> None:
    from mdk.ops.context import OpsError

    try:
        app()
    except (CliError, OpsError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
