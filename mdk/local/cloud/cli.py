"""``mdk local up``: deploy the stacks onto the embedded local AWS, print how to use them, keep them up."""

from __future__ import annotations

import json
import logging
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mdk.config import DEFAULT_CONFIG, ConfigError, KitConfig, load_config

local_app = typer.Typer(
    help="The local cloud: the deployed stacks on an embedded AWS, no account, no Docker.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _port_free(port: int) -> bool:
    if port == 0:
        return True
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is fine
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _watched(config: Path) -> dict[Path, float]:
    """The files whose change means a redeploy: the config and every file a model names."""
    files = {config: 0.0}
    try:
        kit = load_config(config)
    except ConfigError:
        kit = None
    if kit is not None:
        for model in kit.models:
            files[model.artifact] = 0.0
            for variant in getattr(model.sagemaker, "variants", ()) or ():
                files[variant.artifact] = 0.0
    for path in files:
        try:
            files[path] = path.stat().st_mtime_ns
        except OSError:
            files[path] = -1
    return files


def example_of(model: Any) -> dict[str, Any] | None:
    """The model's example request as JSON, or None (none given, or a file that is not a JSON object)."""
    example = model.example
    if isinstance(example, Path):
        try:
            loaded = json.loads(example.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):  # a raw body (an image) for a processed model
            return None
        return loaded if isinstance(loaded, dict) else None
    return example if isinstance(example, dict) else None


def example_data_of(model: Any) -> tuple[str, str]:
    """(command piped into curl, curl's data option) for the model's example request, made up from its
    graph as the warm-up does when the config gives none; NoExample says what to add when nothing runs."""
    from mdk.bundle import raw_example
    from mdk.cli import NoExample, example_data

    if raw_example(model):  # a file a processed model's clients send as is (an image, a text)
        return "", f"--data-binary @{shlex.quote(_shown(model.example))}"
    example = example_of(model)
    if example is not None:
        return example_data(example)
    if model.example is not None:
        raise NoExample(f"its example {model.example} is not a JSON request body")
    if getattr(model, "processing", None) is not None:
        # Its clients send what its processing reads (an image, text), not tensors of zeros.
        raise NoExample(
            "this model has no example request; add `example:` (a file its clients send) to this model "
            "in the config (models.yaml)"
        )
    import onnxruntime as ort

    from mdk.bundle import model_spec
    from mdk_runtime.errors import MdkError
    from mdk_runtime.model import Model, session_options

    try:
        session = ort.InferenceSession(
            str(model.artifact), sess_options=session_options(1), providers=["CPUExecutionProvider"]
        )
        loaded = Model.from_session(session, model_spec(model))
    except Exception as exc:  # noqa: BLE001 - the deployment reports it; here it only means no example
        reason = exc.message if isinstance(exc, MdkError) else (str(exc).splitlines() or [""])[0][:200]
        raise NoExample(
            f"this model has no example request, and its graph could not be read: {reason}"
        ) from None
    return example_data(None, loaded.signature, loaded.warm_up())


def _shown(path: Path) -> str:
    """A path as the printed commands use it: relative to the working directory when inside it."""
    return str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


def content_type_of(model: Any) -> str:
    """The Content-Type of the model's printed example request."""
    from mdk.bundle import example_content_type, raw_example

    return example_content_type(model) if raw_example(model) else "application/json"


def batch_example(kit: KitConfig, work: Path) -> tuple[str, Path] | None:
    """A small JSON Lines file for the first batch-enabled model: its example's rows and one bad line."""
    for model in kit.models:
        if not model.batch.enabled:
            continue
        rows = (example_of(model) or {}).get("instances") or []
        if not rows:
            continue
        lines = []
        for index, row in enumerate(rows):
            if model.batch.id_field:
                lines.append(
                    json.dumps({model.batch.id_field: f"row-{index + 1}", model.batch.features_field: row})
                )
            else:
                lines.append(json.dumps(row))
        lines.append('{"not json')  # a bad record: the manifest accounts for it, the run goes on
        path = work / "examples" / f"{model.name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return model.name, path
    return None


def examples(cloud: Any, kit: KitConfig) -> list[str]:
    """Ready-to-paste commands for this deployment (run from the repository root)."""
    from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY

    ready = cloud.ready
    api = ready.api_url.rstrip("/")
    auth = kit.api.auth
    lines = []
    if auth == "iam":
        signing = f"--aws-sigv4 aws:amz:{cloud.region}:execute-api --user {ACCESS_KEY}:{SECRET_KEY}"
    elif auth == "api_key":
        keys = cloud.session.client("apigateway").get_api_keys(includeValues=True).get("items", [])
        signing = f"-H 'x-api-key: {keys[0]['value']}'" if keys else "-H 'x-api-key: <key>'"
    else:
        # a consumer's access token with the model's scope, from the gateway's token endpoint (as Cognito's)
        token = f"{api.rsplit('/', 1)[0]}/oauth2/token"
        lines.append(
            f"# token: curl -s -u <client id>:<client secret> -d grant_type=client_credentials "
            f"-d scope={kit.project}-{cloud.stage}/<model> {token}"
        )
        signing = "-H 'authorization: Bearer <access_token>'"
    from mdk.cli import NoExample
    from mdk_runtime.routes import PREDICT, model_path

    for model in kit.models:
        try:
            pipe, data = example_data_of(model)
        except NoExample as exc:
            lines.append(f"# {model.name}: {exc}")
            continue
        lines.append(
            f"{pipe}curl -s {signing} -H 'content-type: {content_type_of(model)}' {data} "
            f"{api}{model_path(model.name, PREDICT.action)}"
        )
    env = (
        f"export AWS_ENDPOINT_URL={cloud.aws_endpoint} AWS_ACCESS_KEY_ID={ACCESS_KEY} "
        f"AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_DEFAULT_REGION={cloud.region}"
    )
    lines.append(env)
    sample = batch_example(kit, cloud.work)
    if sample and ready.bucket:
        name, path = sample
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        lines.append(f".venv/bin/aws s3 cp {shown} s3://{ready.bucket}/incoming/{name}/")
        lines.append(f".venv/bin/mdk batch status --model {name}")
    lines.append(".venv/bin/mdk status")
    return lines


def start_note(kit: KitConfig, warmed: list[str]) -> str:
    """Which models started at deploy and which start on first use (their first request pays it)."""
    lazy = ", ".join(m.name for m in kit.models if m.name not in warmed)
    if not warmed:
        return (
            f"{lazy} start on first use (the first request pays the start; --warm NAME starts one at deploy)"
        )
    return f"{', '.join(warmed)} started" + (f"; {lazy} start on first use" if lazy else "")


def _print_ready(
    cloud: Any, kit: KitConfig, config: Path, took: float, *, watch: bool, warmed: list[str]
) -> None:
    ready = cloud.ready
    stacks = ", ".join(s.stack for s in ready.stacks)
    out.print(f"[bold]mdk local cloud[/bold]: {stacks} deployed in {took:.0f} s")
    out.print(f"  API:        {ready.api_url}  (auth: {kit.api.auth})")
    out.print(f"  local AWS:  {cloud.aws_endpoint}  (credentials test/test, region {cloud.region})")
    if ready.bucket:
        out.print(f"  batch:      s3://{ready.bucket}/incoming/<model>/  ->  results/<model>/<run>/")
    out.print(f"  logs:       {cloud.work / 'logs'}/")
    out.print(f"  models:     {start_note(kit, warmed)}")
    out.print("Try, from another shell in this directory:")
    for line in examples(cloud, kit):
        out.print(f"  {line}")
    lambda_models = [m.name for m in kit.models if m.runtime == "lambda"]
    if watch and lambda_models:
        name = lambda_models[0]
        out.print(
            f"Roll out: change {name}'s artifact in {config} (e.g. models/{name}/v2/model.onnx) and "
            f"save; it redeploys and runs the canary (`.venv/bin/mdk status`); "
            f"`.venv/bin/mdk rollback {name}` goes back."
        )
    out.print("ready; Ctrl-C stops every process", style="green")


def _serve(cloud: Any, config: Path, stop: threading.Event, *, watch: bool, warm: list[str] | None) -> None:
    """Until stopped: with ``watch``, redeploy whenever the config or a model file changes."""
    from mdk.local.cloud.deploy import DeployError

    watched = _watched(config)
    while not stop.wait(1.0):
        if not watch or (now := _watched(config)) == watched:
            continue
        watched = now
        err.print("change detected: redeploying ...")
        try:
            cloud.deploy()
            cloud.warm(warm if warm is None else [m for m in warm if m in cloud.ready.models])
        except (DeployError, ConfigError, RuntimeError) as exc:
            err.print(f"[red]redeploy failed[/red]: {exc}")
            continue
        running = cloud.rollouts_running()
        err.print("redeployed" + (": rollout under way, see `mdk status`" if running else ""))


@local_app.command("up")
def up(
    config: Annotated[Path, typer.Option("--config", "-c", help="the model config file")] = Path(
        DEFAULT_CONFIG
    ),
    stage: Annotated[str, typer.Option(help="the stage to deploy (stack names <project>-<stage>-…)")] = "dev",
    api_port: Annotated[int, typer.Option(min=0, max=65535, help="the API's port (0: any free one)")] = 8080,
    aws_port: Annotated[
        int, typer.Option(min=0, max=65535, help="the local AWS's port (0: any free one)")
    ] = 4566,
    minute_s: Annotated[
        float, typer.Option(min=0.05, help="seconds one minute of a rollout or alarm period lasts locally")
    ] = 2.0,
    watch: Annotated[bool, typer.Option(help="redeploy when the config or a model file changes")] = True,
    work: Annotated[Path, typer.Option(help="where the local cloud keeps assets, stages and logs")] = Path(
        "build/local"
    ),
    warm: Annotated[
        list[str] | None,
        typer.Option(
            "--warm",
            help="a model to start at deploy (repeatable; `all`: every model); the others start on first use",
        ),
    ] = None,
) -> None:
    """Deploy the stacks onto an embedded local AWS and serve them until Ctrl-C."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for noisy in ("werkzeug", "botocore", "urllib3", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        kit = load_config(config)
    except ConfigError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    unknown = sorted(set(warm or ()) - {m.name for m in kit.models} - {"all"})
    if unknown:
        names = ", ".join(m.name for m in kit.models)
        err.print(f"--warm {unknown[0]}: no such model in {config} (its models: {names})")
        raise typer.Exit(2)
    to_warm = None if "all" in (warm or ()) else list(warm or ())
    for name, port in (("--api-port", api_port), ("--aws-port", aws_port)):
        if not _port_free(port):
            err.print(
                f"{name}: port {port} on 127.0.0.1 is in use (another `make up`?); pick another, or 0 for any"
            )
            raise typer.Exit(2)
    from mdk.local.cloud.cloud import LocalCloud
    from mdk.local.cloud.deploy import DeployError

    cloud = LocalCloud(
        config=config, stage=stage, api_port=api_port, aws_port=aws_port, minute_s=minute_s, work=work
    )
    stop = threading.Event()

    def interrupted(_signum: int, _frame: Any) -> None:
        # Ctrl-C and SIGTERM alike, even where the shell started us with SIGINT ignored (`make up &`)
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    started = time.perf_counter()
    try:
        cloud.start()
        err.print(f"local AWS (moto) at {cloud.aws_endpoint}; deploying {config} (stage {stage}) ...")
        cloud.deploy()
        warmed = cloud.warm(to_warm)
        _print_ready(cloud, kit, config, time.perf_counter() - started, watch=watch, warmed=warmed)
        _serve(cloud, config, stop, watch=watch, warm=to_warm)
    except KeyboardInterrupt:
        pass
    except DeployError as exc:
        err.print(f"[red]deploy failed[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        cloud.stop()
        err.print("stopped")
