"""How the kit scales with the number of models it deploys (issue 16's figures).

1. **Synth**: configs of 10, 50 and 100 models (70 % copies of the example Lambda model, 30 % copies of
   the example SageMaker model, written into a temporary directory with absolute paths) are synthesized
   as ``cdk synth`` runs the app: ``python app.py`` with ``CDK_OUTDIR`` and ``CDK_CONTEXT_JSON`` (cdk.json's
   context plus ``config`` and ``stage``), the way :meth:`mdk.local.cloud.deploy.Deployer.synth` does, so
   bundling and cdk-nag are in the wall time. From the cloud assembly: resources per stack (the shared
   stack, each Lambda model's stack, each SageMaker model's, the access stack), template bytes, outputs,
   parameters and API Gateway resources per REST API, and the headroom left under each limit
   (``stacks.limits.usage`` where that module exists, else counted here against the quotas below).
2. **The local cloud**: a config of 20 models (14 + 6) is deployed onto the local AWS in a fresh Python
   process (so nothing this process imported flatters or burdens it); then the memory of that process and
   of every process under it (the emulators and runtimes of the Lambda sandboxes, the SageMaker serving
   containers) is read from /proc (VmRSS summed, and PSS, which counts a page shared by several processes
   once in total) with no model called, after a request to 1 model through the local gateway, after
   requests to 5, and after every model is warmed (what ``mdk local up`` did before models started on
   first use). The first request to a model pays its start; its latency is reported, never asserted.

``python -m bench.scale`` runs both and writes ``bench/results/scale.json`` and ``scale.md``;
``make bench`` includes the same section in its report.

CloudFormation's quotas counted against (when ``stacks.limits`` is absent): "AWS CloudFormation quotas",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html (500 resources,
200 outputs, 200 parameters per template, 1 MB of template body in S3); API Gateway's 300 resources per
REST API: "Amazon API Gateway quotas", https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PROJECT = "scale"  # the generated configs' project: its stacks and build dir never meet the checkout's
STAGE = "dev"
LAMBDA_SHARE = 0.7
SYNTH_COUNTS = (10, 50, 100)
LOCAL_MODELS = 20
CALLED = (1, 5)
#: the fallback quotas (see the module docstring)
LIMITS = {
    "resources": 500,
    "template_bytes": 1_000_000,
    "outputs": 200,
    "parameters": 200,
    "api_resources": 300,
}


# ------------------------------------------------------------------------------------------------
# Configs of N models
# ------------------------------------------------------------------------------------------------


def write_config(directory: Path, count: int, *, source: Path = REPO / "models.yaml") -> Path:
    """A config of ``count`` models: ``round(0.7 * count)`` copies of ``source``'s first Lambda model
    (``<name>-001`` ...), the rest copies of its first SageMaker model; paths made absolute."""
    document = yaml.safe_load(source.read_text())
    base = source.parent
    examples = {runtime: _first(document["models"], runtime) for runtime in ("lambda", "sagemaker")}
    lambdas = round(count * LAMBDA_SHARE) if count > 1 else count
    models = []
    for runtime, n in (("lambda", lambdas), ("sagemaker", count - lambdas)):
        for index in range(1, n + 1):
            model = json.loads(json.dumps(examples[runtime]))  # a deep copy
            model["name"] = f"{examples[runtime]['name']}-{index:03d}"
            for key in ("artifact", "example"):
                if isinstance(model.get(key), str):
                    model[key] = str((base / model[key]).resolve())
            models.append(model)
    document.update(project=PROJECT, default_model=models[0]["name"], models=models)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"models-{count}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _first(models: list[dict[str, Any]], runtime: str) -> dict[str, Any]:
    for model in models:
        if model.get("runtime") == runtime and not model.get("processing"):
            return model
    raise LookupError(f"models.yaml has no {runtime} model to copy")


# ------------------------------------------------------------------------------------------------
# Synth
# ------------------------------------------------------------------------------------------------


def synth(config: Path, out: Path) -> float:
    """Synthesize ``config`` into ``out`` as ``cdk synth`` runs the app; the wall time in seconds."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    context = json.loads((REPO / "cdk.json").read_text()).get("context", {})
    context.update({"config": str(config), "stage": STAGE})
    env = {
        **os.environ,
        "CDK_OUTDIR": str(out),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SynthFailed(done.stderr.strip()[-2000:] or f"exit {done.returncode}")
    return seconds


class SynthFailed(RuntimeError):
    """The app refused the config (a limit, a nag finding); the message is its stderr's tail."""


def stack_kind(name: str, template: dict[str, Any]) -> str:
    """shared / access / lambda model / sagemaker model / whole (the single stack before the split)."""
    if name.endswith("-shared"):
        return "shared"
    if name.endswith("-access"):
        return "access"
    types = {r["Type"] for r in template.get("Resources", {}).values()}
    if "-model-" in name:
        return "sagemaker model" if "AWS::SageMaker::Endpoint" in types else "lambda model"
    return "whole"


def template_figures(template: dict[str, Any], size: int) -> dict[str, Any]:
    """What each limit counts in one template."""
    resources = template.get("Resources", {})
    apis = [k for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::RestApi"]
    per_api = 0
    if apis:
        # a REST API's resources: its root and its AWS::ApiGateway::Resource entries (spread over its APIs)
        paths = sum(1 for r in resources.values() if r["Type"] == "AWS::ApiGateway::Resource")
        per_api = 1 + -(-paths // len(apis))
    return {
        "resources": len(resources),
        "template_bytes": size,
        "outputs": len(template.get("Outputs", {})),
        "exports": sum(1 for o in template.get("Outputs", {}).values() if "Export" in o),
        "parameters": len(template.get("Parameters", {})),
        "api_resources": per_api,
    }


def assembly_figures(assembly: Path) -> dict[str, dict[str, Any]]:
    """Per stack of a cloud assembly: its kind and :func:`template_figures`."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    out = {}
    for name, artifact in manifest["artifacts"].items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        path = assembly / artifact["properties"]["templateFile"]
        template = json.loads(path.read_text())
        out[name] = {"kind": stack_kind(name, template), **template_figures(template, path.stat().st_size)}
    return out


def headroom(assembly: Path, stacks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fullest stack against each limit: ``stacks.limits.usage`` where it exists, else counted here."""
    try:  # written alongside the stack split; optional here
        limits: Any = importlib.import_module("stacks.limits")
    except ImportError:
        limits = None
    usage = getattr(limits, "usage", None)
    note = "stacks.limits.usage is absent: counted by bench/scale.py"
    if usage is not None:
        try:
            entries = usage(assembly)  # fullest first
        except Exception as exc:  # noqa: BLE001 - another signature: count here, say why
            note = f"stacks.limits.usage failed ({type(exc).__name__}: {exc}): counted by bench/scale.py"
        else:
            fullest_of: dict[str, Any] = {}
            for entry in entries:
                fullest_of.setdefault(
                    entry.limit,
                    {
                        "stack": entry.stack,
                        "subject": entry.subject,
                        "value": entry.count,
                        "limit": entry.value,
                        "headroom_pct": round((1 - entry.fraction) * 100, 1),
                    },
                )
            return {"source": "stacks.limits.usage", "fullest": fullest_of}
    fullest: dict[str, Any] = {}
    for key, limit in LIMITS.items():
        name, figures = max(stacks.items(), key=lambda item: item[1][key])
        fullest[key] = {
            "stack": name,
            "value": figures[key],
            "limit": limit,
            "headroom_pct": round((limit - figures[key]) / limit * 100, 1),
        }
    return {"source": note, "fullest": fullest}


def synth_scale(counts: tuple[int, ...] = SYNTH_COUNTS) -> dict[str, Any]:
    """Synth time, resources per kind of stack and headroom, per model count."""
    out: dict[str, Any] = {"counts": list(counts), "lambda_share": LAMBDA_SHARE, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="mdk-bench-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        for count in counts:
            print(f"  synth, {count} models ...", file=sys.stderr)
            config = write_config(tmp, count)
            assembly = tmp / f"cdk.out-{count}"
            try:
                seconds = synth(config, assembly)
            except SynthFailed as exc:
                out["runs"][str(count)] = {"models": count, "failed": str(exc).splitlines()[-1][:500]}
                continue
            stacks = assembly_figures(assembly)
            out["runs"][str(count)] = {
                "models": count,
                "synth_s": round(seconds, 1),
                **summarize_stacks(stacks, count),
                "headroom": headroom(assembly, stacks),
            }
            shutil.rmtree(assembly, ignore_errors=True)
    shutil.rmtree(REPO / "build" / "cdk" / f"{PROJECT}-{STAGE}", ignore_errors=True)
    return out


def summarize_stacks(stacks: dict[str, dict[str, Any]], count: int) -> dict[str, Any]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for figures in stacks.values():
        by_kind.setdefault(figures["kind"], []).append(figures)
    kinds = {}
    for kind, items in sorted(by_kind.items()):
        resources = [f["resources"] for f in items]
        kinds[kind] = {
            "stacks": len(items),
            "resources_median": statistics.median(resources),
            "resources_max": max(resources),
            "template_kb_max": round(max(f["template_bytes"] for f in items) / 1000, 1),
            "outputs_max": max(f["outputs"] for f in items),
            "exports": sum(f["exports"] for f in items),
        }
    total = sum(f["resources"] for f in stacks.values())
    shared = sum(f["resources"] for f in stacks.values() if f["kind"] in ("shared", "access"))
    largest = max(stacks.items(), key=lambda item: item[1]["template_bytes"])
    return {
        "stacks": len(stacks),
        "resources_total": total,
        "resources_per_model": round((total - shared) / count, 1),
        "by_kind": kinds,
        "largest_template": {"stack": largest[0], "kb": round(largest[1]["template_bytes"] / 1000, 1)},
    }


# ------------------------------------------------------------------------------------------------
# The local cloud with 20 models
# ------------------------------------------------------------------------------------------------


def tree_memory(root: int) -> dict[str, Any]:
    """``root`` and every process under it: their count, VmRSS summed and PSS summed (MiB)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(") ", 1)[1].split()[1])
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in members:
                members.add(child)
                frontier.append(child)
    rss = pss = 0
    for pid in members:
        rss += _field_kib(Path(f"/proc/{pid}/status"), "VmRSS")
        pss += _field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
    return {"processes": len(members), "rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


def _field_kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _request(cloud: Any, model: Any) -> tuple[int, float]:
    """One predict request of ``model``'s example through the local gateway: (status, seconds)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from mdk.local.cloud.cli import example_of
    from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY
    from mdk_runtime.routes import PREDICT, model_path

    url = cloud.ready.api_url.rstrip("/") + model_path(model.name, PREDICT.action)
    body = json.dumps(example_of(model) or {}).encode()
    headers = {"content-type": "application/json"}
    if model_auth(cloud) == "iam":
        signing = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", cloud.region).add_auth(signing)
        headers = dict(signing.prepare().headers)
    elif model_auth(cloud) == "api_key":
        keys = cloud.session.client("apigateway").get_api_keys(includeValues=True).get("items", [])
        headers["x-api-key"] = keys[0]["value"] if keys else ""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=300) as response:
            response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - started


def model_auth(cloud: Any) -> str:
    from mdk.config import load_config

    return str(load_config(cloud.config).api.auth)


def running(cloud: Any) -> dict[str, int]:
    """Model sandboxes and serving containers running now (other functions: custom resources, hooks)."""
    ready = cloud.ready
    functions = {m.lambda_.function_name for m in ready.models.values() if m.lambda_ is not None}
    keys = cloud.runner.processes()
    return {
        "model_sandboxes": sum(1 for function, _version in keys if function in functions),
        "other_sandboxes": sum(1 for function, _version in keys if function not in functions),
        "serving_containers": len(cloud.containers.running()),
    }


def call_order(models: Any) -> list[Any]:
    """The models to call, in order: a Lambda model first, then both kinds (5: 3 Lambda, 2 SageMaker)."""
    lambdas = [m for m in models if m.runtime == "lambda"]
    sagemakers = [m for m in models if m.runtime == "sagemaker"]
    return lambdas[:1] + sagemakers[:1] + lambdas[1:3] + sagemakers[1:2] + lambdas[3:] + sagemakers[2:]


def _cloud_child(count: int, called: list[int], eager: bool = False) -> dict[str, Any]:
    """Runs in the measured process: deploy ``count`` models, then memory after each step. ``eager``:
    every model warmed right after the deploy, nothing called (what ``mdk local up`` did before)."""
    import logging

    from mdk.config import load_config
    from mdk.local.cloud.cloud import LocalCloud

    for noisy in ("werkzeug", "botocore", "urllib3", "mdk.local"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    me = os.getpid()
    first_requests: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mdk-bench-local-") as tmp_dir:
        tmp = Path(tmp_dir)
        config = write_config(tmp, count)
        kit = load_config(config)
        started = time.perf_counter()
        cloud = LocalCloud(config=config, work=tmp / "work", minute_s=1.0)
        cloud.start()
        try:
            aws_s = time.perf_counter() - started
            cloud.deploy()
            up_s = time.perf_counter() - started
            if eager:
                warm_started = time.perf_counter()
                cloud.warm()
                warm_s = time.perf_counter() - warm_started
                step = "deployed, every model warmed, none called"
                steps = [{"step": step, **tree_memory(me), **running(cloud)}]
            else:
                steps = [{"step": "deployed, no model called", **tree_memory(me), **running(cloud)}]
                steps += _call(cloud, call_order(kit.models), called, first_requests)
                warm_started = time.perf_counter()
                cloud.warm()
                warm_s = time.perf_counter() - warm_started
                steps.append({"step": "then every model warmed", **tree_memory(me), **running(cloud)})
        finally:
            cloud.stop()
    return {
        "models": count,
        "lambda_models": sum(1 for m in kit.models if m.runtime == "lambda"),
        "sagemaker_models": sum(1 for m in kit.models if m.runtime == "sagemaker"),
        "aws_start_s": round(aws_s, 2),
        "start_s": round(up_s, 1),
        "warm_every_model_s": round(warm_s, 1),
        "steps": steps,
        "first_requests": first_requests,
    }


def _call(cloud: Any, order: list[Any], called: list[int], log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call the first 1, then 5 (``called``) models of ``order``, twice each; memory after each group."""
    steps, done = [], 0
    me = os.getpid()
    for target in called:
        for model in order[done:target]:
            status, seconds = _request(cloud, model)
            again, warm_s = _request(cloud, model)
            log.append(
                {
                    "model": model.name,
                    "runtime": model.runtime,
                    "status": [status, again],
                    "first_s": round(seconds, 2),
                    "second_ms": round(warm_s * 1000, 1),
                }
            )
        done = target
        steps.append({"step": f"{target} called", **tree_memory(me), **running(cloud)})
    return steps


def local_cloud(count: int = LOCAL_MODELS, called: tuple[int, ...] = CALLED) -> dict[str, Any]:
    """:func:`_cloud_child` in a fresh Python process, models started on first use; then in another, every
    model warmed at deploy (the ``eager`` figures)."""
    figures = _child(count, called, eager=False)
    if "failed" not in figures:
        figures["eager"] = _child(count, (), eager=True)
    return figures


def _child(count: int, called: tuple[int, ...], *, eager: bool) -> dict[str, Any]:
    code = (
        "import json, sys; from bench.scale import _cloud_child; print('MDK-BENCH ' + json.dumps("
        "_cloud_child(int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == 'eager')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(count), json.dumps(list(called)), "eager" if eager else "lazy"],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'layers' / 'python'}"},
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("MDK-BENCH "):
            figures: dict[str, Any] = json.loads(line.removeprefix("MDK-BENCH "))
            return figures
    return {"models": count, "failed": (done.stderr or done.stdout).strip()[-2000:]}


# ------------------------------------------------------------------------------------------------
# Both, and the report
# ------------------------------------------------------------------------------------------------


def measure(*, quick: bool = False) -> dict[str, Any]:
    counts = (2, 10) if quick else SYNTH_COUNTS
    print("scale: synth ...", file=sys.stderr)
    figures = {"synth": synth_scale(counts)}
    print("scale: the local cloud ...", file=sys.stderr)
    figures["local"] = local_cloud(4 if quick else LOCAL_MODELS, (1, 2) if quick else CALLED)
    return figures


def report_lines(figures: dict[str, Any]) -> list[str]:
    """The ``make bench`` report's section."""
    synth_figures = figures["synth"]
    share = round(synth_figures["lambda_share"] * 100)
    lines = [
        f"## Scale: synth and CloudFormation resources as the model count grows ({share} % Lambda, "
        f"{100 - share} % SageMaker copies of the example models)",
        "",
        "Wall time of the CDK app as `cdk synth` runs it (bundling and cdk-nag included), one run each.",
        "",
        "| models | synth s | stacks | resources | per model | shared stack | Lambda model stack | "
        "SageMaker model stack | largest template KB | fullest template's resources (of 500) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in synth_figures["runs"].values():
        if "failed" in run:
            lines.append(f"| {run['models']} | refused: {run['failed']} | | | | | | | | |")
            continue
        kinds = run["by_kind"]

        def cell(kind: str, kinds: dict[str, Any] = kinds) -> str:
            item = kinds.get(kind)
            if item is None:
                return "-"
            if item["resources_median"] == item["resources_max"]:
                return str(item["resources_max"])
            return f"{item['resources_median']} (max {item['resources_max']})"

        fullest_of = run["headroom"].get("fullest", {})
        fullest = fullest_of.get("resources_per_template") or fullest_of.get("resources")
        full = f"{fullest['value']} ({fullest['headroom_pct']} % left)" if fullest else "see headroom"
        shared = cell("shared") if "shared" in kinds else f"{cell('whole')} (one stack)"
        lines.append(
            f"| {run['models']} | {run['synth_s']} | {run['stacks']} | {run['resources_total']} | "
            f"{run['resources_per_model']} | {shared} | {cell('lambda model')} | {cell('sagemaker model')} "
            f"| {run['largest_template']['kb']} | {full} |"
        )
    last = next((r for r in reversed(list(synth_figures["runs"].values())) if "failed" not in r), None)
    if last is not None:
        room = last["headroom"]
        lines += [
            "",
            f"Headroom at {last['models']} models, the fullest stack (or API) against each limit "
            f"({room['source']}):",
            "",
            "| limit | where | count | limit | left |",
            "|---|---|---|---|---|",
        ]
        for key, item in room["fullest"].items():
            where = item["stack"] + (f" ({item['subject'][:60]})" if item.get("subject") else "")
            lines.append(
                f"| {key} | {where} | {item['value']:,} | {item['limit']:,} | {item['headroom_pct']} % |"
            )
    local = figures["local"]
    lines += [
        "",
        f"## Scale: the local cloud with {local['models']} models listed",
        "",
    ]
    if "failed" in local:
        return [*lines, f"Failed: {local['failed']}"]
    lines += [
        f"{local['lambda_models']} Lambda and {local['sagemaker_models']} SageMaker models; started in "
        f"{local['start_s']} s (local AWS {local['aws_start_s']} s, then synth and deploy of every stack). "
        "Memory of the local cloud's process and every process under it (sandboxes' emulators and "
        "runtimes, serving containers), MiB.",
        "",
        "| step | processes | model sandboxes | serving containers | RSS summed | PSS |",
        "|---|---|---|---|---|---|",
    ]
    eager = local.get("eager", {})
    for step in [*local["steps"], *(eager.get("steps") or [])]:
        lines.append(
            f"| {step['step']} | {step['processes']} | {step['model_sandboxes']} | "
            f"{step['serving_containers']} | {step['rss_mib']} | {step['pss_mib']} |"
        )
    if "steps" in eager:
        lines += [
            "",
            f"The last row is a second fresh local cloud that warms every model right after its deploy, as "
            f"`mdk local up` did before models started on first use: ready after {eager['start_s']} + "
            f"{eager['warm_every_model_s']} s instead of {local['start_s']} s. A warmed Lambda sandbox is its "
            "emulator alone until its first invocation (the emulator starts the runtime then); a warmed "
            "endpoint's container has loaded its model.",
        ]
    first = local["first_requests"]
    if first:
        lambda_first = [r["first_s"] for r in first if r["runtime"] == "lambda"]
        sm_first = [r["first_s"] for r in first if r["runtime"] == "sagemaker"]
        parts = []
        if lambda_first:
            parts.append(
                f"a Lambda model {statistics.median(lambda_first)} s (median of {len(lambda_first)})"
            )
        if sm_first:
            parts.append(f"a SageMaker model {statistics.median(sm_first)} s (median of {len(sm_first)})")
        statuses = sorted({s for r in first for s in r["status"]})
        lines += [
            "",
            f"A model's first request pays its start (staging, sandbox or container, model load): "
            f"{'; '.join(parts)}; the second request: median "
            f"{statistics.median(r['second_ms'] for r in first)} ms. Statuses seen: {statuses}. "
            f"Warming every model afterwards took {local['warm_every_model_s']} s.",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="synth and local-cloud figures as the model count grows")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run, not for figures)")
    parser.add_argument("--synth-only", action="store_true", help="the local part kept from scale.json")
    parser.add_argument("--local-only", action="store_true", help="the synth part kept from scale.json")
    args = parser.parse_args(argv)
    counts = (2, 10) if args.quick else SYNTH_COUNTS
    kept: dict[str, Any] = {
        "synth": {"counts": [], "lambda_share": LAMBDA_SHARE, "runs": {}},
        "local": {"models": 0, "failed": "not run"},
    }
    if (RESULTS / "scale.json").is_file():
        kept.update(json.loads((RESULTS / "scale.json").read_text()))
    figures: dict[str, Any] = {
        "synth": kept["synth"] if args.local_only else synth_scale(counts),
        "local": kept["local"]
        if args.synth_only
        else local_cloud(4 if args.quick else LOCAL_MODELS, (1, 2) if args.quick else CALLED),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = "\n".join(report_lines(figures)) + "\n"
    (RESULTS / "scale.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
