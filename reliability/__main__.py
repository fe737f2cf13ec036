"""``make reliability``: the campaign that shows the kit holds, and its report.

1. fuzzing: schemathesis on every deployed route (``tests/cloud/test_fuzz.py`` with many more examples)
   and the runtime's hypothesis property tests (``tests/unit/test_runtime_properties.py``);
2. fault injection: ``tests/cloud/test_faults.py`` (failed and short transform jobs, duplicate events,
   a corrupt model, AWS throttling within and past every retry, the local AWS restarted mid-batch) and
   ``tests/cloud/test_limits.py`` (a model too slow for the function's timeout, stage throttling);
3. rollouts: ``tests/cloud/test_local_cloud.py`` (hook failure, alarm mid-canary, rollback);
4. load: the example config on the local cloud, ``--clients`` clients for ``--duration`` seconds mixing
   valid and invalid requests, with the memory of every process sampled (``reliability/load.py``).

Writes ``build/reliability/report.md`` and ``report.json``: figures, what was tried, what broke and how
it was fixed. Targets are checked in the report, not asserted; the exit status is non-zero only if a
part could not run or found a failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "reliability"
MEMORY_GROWTH_LIMIT_PCT = 10.0  # late vs early RSS of any process under steady load

#: Found by this campaign while it was built, and fixed (the tests that caught them stay in make test).
FINDINGS = [
    (
        "Fuzzing (schemathesis) sent TRACE to /models/iris/predict: the local gateway answered with "
        "http.server's HTML 501",
        "every method now reaches the gateway's routing and gets API Gateway's answer (403, the kit's "
        "error shape)",
    ),
    (
        "The load test: the local cloud's own process grew from 343 to 550 MiB in 5 minutes (+41 %), then "
        "still +18.7 % once the local CloudWatch kept a 60-minute window only. Bisected by switching the "
        "metrics off (flat), then by counting live objects between rounds: moto appends every model object "
        "it creates (each metric data point among them) to a class-level `instances_tracked` list for its "
        "web dashboard, and never lets go",
        "the local cloud does not track moto's model objects (it has no dashboard); the local CloudWatch "
        "keeps 60 simulated minutes of data points, pruned in place, and stores counts as one statistic set "
        "per series and second (as the CloudWatch agent does) while latencies stay raw for percentiles",
    ),
    (
        "Most of the stack's alarms (cdk-monitoring-constructs writes them as a single labelled MetricStat) "
        "were never evaluated locally, no alarm ever notified its topic, and SQS queue depths were never "
        "measured: the dead-letter alarm could not fire",
        "single-MetricStat alarms are evaluated like plain ones, every state change is sent to the alarm's "
        "SNS actions in CloudWatch's message shape, and the AWS/SQS gauges alarms watch are sampled from the "
        "local queues",
    ),
    (
        "Lambda's asynchronous invocations (EventBridge -> the batch functions) were retried at once and "
        "then dropped with a log line",
        "the local cloud retries as the function's event invoke config says (default 2, after 1 and 2 "
        "simulated minutes) and then writes Lambda's on-failure record (event, error, attempts) to the "
        "destination queue, retrying while SQS is unreachable",
    ),
    (
        "A model too slow for some inputs would run until Lambda killed the sandbox: API Gateway's bare 502 "
        "for the caller, a cold start for the next one",
        "a prediction runs against a deadline (the function's remaining time or API Gateway's 29 s, less a "
        "margin): onnxruntime's terminate flag stops it, the caller gets 504 inference_timeout in the kit's "
        "error shape, the sandbox keeps serving, and a per-model alarm fires on the first one",
    ),
    (
        "SageMaker's 429 (endpoint throttled or not ready) would have reached callers as a 400; the local "
        "gateway did not apply the stage's throttling at all",
        "a 429 integration response (code throttled, retry with backoff) with non-overlapping patterns; "
        "the local gateway applies the stage's rate and burst (token bucket) and answers API Gateway's "
        "THROTTLED response in the kit's shape",
    ),
    (
        "Fault injection (one S3 event delivered twice, concurrently) started two transform jobs: the "
        "local cloud gave every S3-sourced event a fresh sequencer, including client PutEvents, so the "
        "trigger's idempotency key differed",
        "only moto's own constant sequencer is replaced; a redelivered event keeps its sequencer and the "
        "trigger starts one run",
    ),
]


def pytest_part(name: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    junit = OUT / f"{name}.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    return {
        "name": name,
        "args": args,
        "passed": done.returncode == 0,
        "summary": tail,
        "seconds": round(time.perf_counter() - started, 1),
        "output_tail": done.stdout[-3000:] if done.returncode else "",
    }


def load_part(duration: float, clients: int) -> dict[str, Any]:
    from mdk.local.cloud.cloud import LocalCloud
    from reliability import load

    for noisy in ("werkzeug", "botocore", "urllib3", "mdk.local"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # one simulated minute a second: the local CloudWatch keeps 60 s of data points, so its retention
    # window is full well within the warm-up the memory figures leave out
    cloud = LocalCloud(config=REPO / "models.yaml", work=OUT / "local", minute_s=1.0)
    cloud.start()
    try:
        cloud.deploy()
        cloud.warm()
        result = load.run(cloud, duration_s=duration, clients=clients)
    finally:
        cloud.stop()
    summary = result.summary()
    (OUT / "load-memory.json").write_text(json.dumps(result.memory, indent=1))
    return summary


def report(parts: list[dict[str, Any]], load_summary: dict[str, Any] | None, args: argparse.Namespace) -> str:
    lines = [
        "# mdk reliability report",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Client and local cloud share the machine.",
        "",
        "## Fuzzing and fault injection",
        "",
        "| part | what | result | seconds |",
        "|---|---|---|---|",
    ]
    for part in parts:
        lines.append(
            f"| {part['name']} | `pytest {' '.join(part['args'])}` | {part['summary']} | {part['seconds']} |"
        )
    lines += [""]
    if load_summary is not None:
        s = load_summary
        lines += [
            f"## Load: {s['clients']} clients for {s['duration_s']} s on the local cloud (loopback)",
            "",
            f"{s['requests']} requests, {s['throughput_rps']} req/s; unexpected: **{s['unexpected']}** "
            f"(target 0), server errors (5xx): **{s['server_errors']}** (target 0), throttled by the "
            f"stage (429, the config's api.throttle_rate): {s['throttled']}.",
            "",
            "| kind | requests | statuses | unexpected | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for kind, k in s["kinds"].items():
            statuses = ", ".join(f"{code}: {n}" for code, n in sorted(k["statuses"].items()))
            lines.append(
                f"| {kind} | {k['requests']} | {statuses} | {k['unexpected']} | {k['p50_ms']} | {k['p99_ms']} |"
            )
        lines += [
            "",
            f"Memory (RSS) per process; growth = the run's last fifth over its third fifth, after warm-up "
            f"(target: under {MEMORY_GROWTH_LIMIT_PCT:g} %):",
            "",
            "| process | samples | first MiB | last MiB | peak MiB | growth % |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in s["memory"].items():
            flag = " **over**" if m["growth_pct"] > MEMORY_GROWTH_LIMIT_PCT else ""
            lines.append(
                f"| {name} | {m['samples']} | {m['first_mib']} | {m['last_mib']} | {m['peak_mib']} | {m['growth_pct']}{flag} |"
            )
        lines += [
            "",
            "Each function version is one sandbox in the local cloud (its requests queue), and the 2 "
            "cores run the clients, the gateway, moto and the functions at once: throughput here is the "
            "local cloud's, not Lambda's.",
            "",
        ]
    lines += ["## What broke, and how it was fixed", ""]
    for found, fix in FINDINGS:
        lines.append(f"- {found}. Fixed: {fix}.")
    lines += [
        "",
        "## Not tried here",
        "",
        "- A restart of the whole local cloud process (`make up` stopped and started): its AWS is in "
        "memory, so a restart starts empty (a fresh deploy). What the batch pipeline sees of an AWS restart "
        "(every call refused for a while, then answered with the state intact, as AWS keeps its state) is "
        "tested: the endpoint is taken down mid-batch and brought back on the same port.",
        "- Lambda's own throttling (reserved concurrency): the local runner has one sandbox per version "
        "and queues instead of refusing.",
        "- SageMaker's ThrottlingException (a 400, not a 429): an AWS integration can only select on the "
        "status code, so it answers 400 like other refusals.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="load seconds (default 300)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--fuzz-examples", type=int, default=300, help="schemathesis examples per operation")
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print("fuzzing and fault injection ...", flush=True)
    parts = [
        pytest_part("fuzz-api", ["tests/cloud/test_fuzz.py"], {"MDK_FUZZ_EXAMPLES": str(args.fuzz_examples)}),
        pytest_part("properties", ["tests/unit/test_runtime_properties.py"], {}),
        pytest_part("faults", ["tests/cloud/test_faults.py", "tests/cloud/test_limits.py"], {}),
        pytest_part("rollouts", ["tests/cloud/test_local_cloud.py"], {}),
    ]
    load_summary = None
    if not args.skip_load:
        print(f"load: {args.clients} clients for {args.duration:g} s ...", flush=True)
        load_summary = load_part(args.duration, args.clients)
    text = report(parts, load_summary, args)
    (OUT / "report.md").write_text(text)
    (OUT / "report.json").write_text(json.dumps({"parts": parts, "load": load_summary}, indent=1))
    print(text)
    failed = [p["name"] for p in parts if not p["passed"]]
    if load_summary and (load_summary["unexpected"] or load_summary["server_errors"]):
        failed.append("load")
    grown = [
        n
        for n, m in (load_summary or {}).get("memory", {}).items()
        if m["growth_pct"] > MEMORY_GROWTH_LIMIT_PCT
    ]
    if grown:
        failed.append(f"memory growth ({', '.join(grown)})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
