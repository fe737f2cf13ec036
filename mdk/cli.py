"""``mdk``: the kit's command line (config checks, bundles, the local server, example models)."""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mdk.config import DEFAULT_CONFIG, ConfigError, KitConfig, ModelConfig, load_config

app = typer.Typer(
    help="mdk, the Model Deployment Kit: ONNX models to AWS Lambda and SageMaker, tested offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Check the model config.", no_args_is_help=True)
app.add_typer(config_app, name="config")
batch_app = typer.Typer(
    help="Batch transform, locally: what the deployed pipeline does.", no_args_is_help=True
)
app.add_typer(batch_app, name="batch")

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


def curl_example(base_url: str, name: str, example: Any) -> str:
    body = json.dumps(example if example is not None else {"instances": []}, separators=(",", ":"))
    return (
        f"curl -s -X POST {base_url}/models/{name}/predict "
        f"-H 'content-type: application/json' -d {shlex.quote(body)}"
    )


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
    from mdk_runtime.service import InferenceService, Settings

    model = _pick(_load(config), name)
    bundle_dir = write_bundle(model, BUNDLES_DIR / model.name)
    service = InferenceService.load(Settings(model_dir=bundle_dir))
    if service.model is None:
        assert service.load_error is not None
        raise CliError(f"model {model.name!r} failed to load: {service.load_error.message}")
    base = f"http://{host}:{port}"
    example = service.model.spec.example
    out.print(f"[bold]mdk[/bold] serving model [bold]{model.name}[/bold] version {service.version} at {base}")
    out.print(f"  metadata: curl -s {base}/models/{model.name}/metadata")
    out.print(f"  health:   curl -s {base}/models/{model.name}/health")
    out.print(f"  docs:     {base}/docs")
    out.print("  predict:")
    out.print(curl_example(base, model.name, example), soft_wrap=True, highlight=False)

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
    manifest = run_file(model, file, results, bundle_dir=BUNDLES_DIR / model.name)
    source, output = manifest["input"], manifest.get("output") or {}
    style = "green" if manifest["state"] == "Completed" else "red"
    out.print(f"[{style}]{manifest['state']}[/{style}]: {manifest['message']}", highlight=False)
    for error in manifest["errors"]:
        out.print(f"  {error['field']}: {error['message']}", highlight=False)
    if output:
        out.print(
            f"  input lines {source.get('lines')}, output lines {output.get('lines')}, "
            f"errors {output.get('error_lines')} {output.get('errors_by_code') or ''}",
            highlight=False,
        )
        for path in output.get("files", []):
            out.print(f"  output:   {path}", highlight=False)
    out.print(f"  manifest: {manifest['manifest']}", highlight=False)
    if manifest["state"] != "Completed":
        raise typer.Exit(1)


@app.command()
def examples(
    force: Annotated[bool, typer.Option("--force", help="rebuild models that already exist")] = False,
) -> None:
    """Build the example models (iris v1/v2, digits) from scikit-learn's bundled data sets."""
    from mdk import examples as builder

    builder.main(["--force"] if force else [])


def main() -> None:
    try:
        app()
    except CliError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
