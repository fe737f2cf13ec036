"""``make bench``: the benchmark report (bench/results/report.md and report.json).

Everything is measured in one run, against baselines from the same run:

1. warm latency in process: raw ``session.run`` / the service / the Lambda handler / the same
   FastAPI app behind Mangum, for an iris request of 1 and 64 rows and a 64-row request of a
   1M-parameter MLP;
2. under the real Lambda Runtime Interface Emulator: the kit's image vs a bare onnxruntime handler
   image (same base, pins and model), warm invoke latency and cold start (the emulator's
   ``INIT REPORT`` and process start to first response, fresh emulator each time);
3. the dependency footprint of the image for x86_64 and arm64;
4. a 100 MB+ model's cold start (session creation + warm-up) and memory against a tiny model's, fresh
   processes each (bench/large_model.py);
5. what a model's processing costs per request against its inference, for the real image and handler
   examples (bench/processing.py);
6. synth time and CloudFormation resources per model at 10, 50 and 100 models, and the local cloud's
   start time and memory with 20 models listed as models are called (bench/scale.py);
7. the SageMaker serving container against BentoML and LitServe serving the same ONNX models, driven by
   wrk at 1, 8 and 32 connections, a 1M- and a 21M-parameter model, each against raw onnxruntime at the
   batch its batching reached (bench/peers/; the peers run from the benchmark-only .cache/bench-venv).

Targets are checked in the report, not asserted: a figure that misses says by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Before the handler's Logger exists: the benchmark's output is the report, not model-loaded lines.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from bench import footprint, inprocess, large_model
from bench import models as bench_models
from bench import processing as processing_bench
from bench import scale as scale_bench
from bench.stats import summarize
from bench.targets import TARGETS, serving_targets, verdict, verdict_at_least

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CACHE = REPO / ".cache"
BUNDLES = Path("build") / "bundles"


def bundles(tmp: Path) -> dict[str, Path]:
    """The iris bundle from the config and a bundle of the 1M-parameter MLP, inside the build context."""
    from mdk.bundle import write_bundle
    from mdk.config import load_config
    from mdk_runtime.spec import ModelSpec, file_sha256

    iris = write_bundle(load_config(REPO / "models.yaml").model("iris"), REPO / BUNDLES / "bench-iris")
    mlp_dir = REPO / BUNDLES / "bench-mlp"
    artifact = bench_models.write(mlp_dir / "model.onnx")
    digest = file_sha256(artifact)
    spec = ModelSpec(name="mlp", version=digest[:12], sha256=digest, description="1M-parameter benchmark MLP")
    (mlp_dir / "mdk-model.json").write_text(json.dumps(spec.to_json()))
    # As `mdk bundle` writes it for a model without processing: the image recipe copies it (installs nothing).
    (mlp_dir / "requirements.txt").write_text(
        "# No processing: nothing to install (written by make bench).\n"
    )
    return {"iris": iris, "mlp": mlp_dir}


def rows_for(name: str, n: int) -> np.ndarray:
    """Feature rows as a client has them (4 decimals, so the JSON has the numbers' usual length)."""
    rng = np.random.default_rng(7)
    width = 4 if name == "iris" else bench_models.LAYERS[0]
    scale = 8.0 if name == "iris" else 1.0
    return rng.uniform(0, scale, size=(n, width)).round(4).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Under the emulator
# ------------------------------------------------------------------------------------------------


def stage(recipe: Any, bundle: Path, root: Path) -> Any:
    from mdk.images import stage as stage_recipe

    return stage_recipe(
        recipe, REPO, root, {"MODEL_DIR": str(bundle.relative_to(REPO))}, cache_dir=CACHE / "layers"
    )


def event_for(name: str, rows: np.ndarray) -> dict[str, Any]:
    return inprocess.api_event(f"/models/{name}/predict", inprocess.client_json(rows))


def warm_under_rie(image: Any, rie: Path, events: dict[str, dict[str, Any]], *, n: int) -> dict[str, Any]:
    """Warm invoke latency per event: as the client sees it, and the emulator's REPORT Duration."""
    from mdk.local.rie import LambdaProcess

    out: dict[str, Any] = {}
    with LambdaProcess(image, rie, function_name="mdk-bench", memory_mb=2048) as proc:
        for label, event in events.items():
            for _ in range(20):
                proc.invoke(event)
            samples = []
            for _ in range(n):
                start = time.perf_counter_ns()
                response = proc.invoke(event)
                samples.append(time.perf_counter_ns() - start)
                assert response["statusCode"] == 200, response
            # The emulator's REPORT Duration: the function's own time, what Lambda reports and bills.
            durations = [int(r.duration_ms * 1e6) for r in proc.reports()[-n:]]
            out[label] = {
                "invoke": summarize(samples).to_json(),
                "report_duration": summarize(durations).to_json(),
            }
    return out


def cold_starts(
    images: dict[str, Any], rie: Path, event: dict[str, Any], docs_event: dict[str, Any], *, n: int
) -> dict[str, Any]:
    """Fresh emulators, the images taking turns (so this machine's drifts hit both alike)."""
    from mdk.local.rie import LambdaProcess

    inits: dict[str, list[float]] = {name: [] for name in images}
    firsts: dict[str, list[float]] = {name: [] for name in images}
    docs: list[float] = []
    for _ in range(n):
        for name, image in images.items():
            with LambdaProcess(image, rie, function_name="mdk-bench", memory_mb=2048) as proc:
                proc.invoke(event)
                inits[name].append(proc.init_duration_ms())
                assert proc.first_response_s is not None
                firsts[name].append(proc.first_response_s * 1e3)
                if name == "kit":  # the first non-model route builds the FastAPI app: its one-off cost
                    proc.invoke(docs_event)
                    docs.append(proc.reports()[-1].duration_ms)
    out: dict[str, Any] = {
        name: {
            "init_ms_median": round(statistics.median(inits[name]), 1),
            "init_ms_all": [round(x, 1) for x in inits[name]],
            "start_to_first_response_ms_median": round(statistics.median(firsts[name]), 1),
        }
        for name in images
    }
    out["kit"]["first_openapi_request_ms_median"] = round(statistics.median(docs), 1)
    return out


def batch_figures(made: dict[str, Path], tmp: Path, *, quick: bool) -> dict[str, Any]:
    """The JSON Lines path vs the reference pipeline (in process), and a 1M-line file end to end."""
    import orjson

    from bench import batch

    out: dict[str, Any] = {"chunk": batch.CHUNK, "path": {}}
    for name, count in (("iris", 20_480 if quick else 204_800), ("mlp", 4_096 if quick else 16_384)):
        lines = [orjson.dumps(row) for row in rows_for(name, count).round(4).tolist()]
        artifact = made[name] / "model.onnx"
        reference = batch.reference_rows_per_s(artifact, lines)
        container = batch.container_path_rows_per_s(made[name], lines)
        out["path"][name] = {
            "lines": count,
            "reference_rows_per_s": round(reference, 1),
            "container_rows_per_s": round(container, 1),
            "ratio": round(container / reference, 3),
        }
    lines_e2e = 100_000 if quick else 1_000_000
    data = batch.write_lines(tmp / "batch-iris.jsonl", rows_for("iris", lines_e2e))
    out["end_to_end"] = batch.end_to_end(made["iris"], data)
    return out


def staged_size(task_root: Path) -> float:
    return round(sum(f.stat().st_size for f in task_root.rglob("*") if f.is_file()) / 2**20, 1)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def report_md(results: dict[str, Any]) -> str:
    lines = [
        "# mdk benchmark report",
        "",
        f"{results['machine']}; {results['when']}. Latencies in microseconds (p50 / p99), one run.",
        "",
    ]
    for title, key in (
        ("iris, 1 row", "iris_1"),
        ("iris, 64 rows", "iris_64"),
        ("1M-parameter MLP, 64 rows", "mlp_64"),
        ("1M-parameter MLP, 1 row", "mlp_1"),
    ):
        block = results["inprocess"][key]
        lines += [
            f"## In process: {title}",
            "",
            "| path | p50 µs | p99 µs | p50 - raw |",
            "|---|---|---|---|",
        ]
        raw = block["raw session.run"]["p50_us"]
        for path, summary in block.items():
            lines.append(
                f"| {path} | {summary['p50_us']} | {summary['p99_us']} | {summary['p50_us'] - raw:+.1f} |"
            )
        lines.append("")
    pt, served = results["powertools_emf_us"], results["emf_served_us"]
    lines += [
        f"The handler's metrics alone (mdk_runtime.emf, Latency + Instances from the template, one write): p50 "
        f"{served['p50_us']} µs, p99 {served['p99_us']} µs; the same document through Powertools' Metrics "
        f"(add_metric x2 + flush_metrics, what the handler did before): p50 {pt['p50_us']} µs, p99 {pt['p99_us']} µs.",
        "",
        "## Under the Lambda Runtime Interface Emulator (2048 MB settings, HTTP invoke on loopback)",
        "",
        "Invoke: as the client sees it (emulator and HTTP included). Duration: the emulator's REPORT,",
        "the function's own time as Lambda reports and bills it.",
        "",
        "| image | request | invoke p50 µs | invoke p99 µs | Duration p50 µs | Duration p99 µs |",
        "|---|---|---|---|---|---|",
    ]
    for image in ("kit", "bare"):
        for label, both in results["rie"][image]["warm"].items():
            inv, dur = both["invoke"], both["report_duration"]
            lines.append(
                f"| {image} | {label} | {inv['p50_us']} | {inv['p99_us']} | {dur['p50_us']} | {dur['p99_us']} |"
            )
    lines += [
        "",
        "| image | INIT REPORT median ms | all | start → first response median ms |",
        "|---|---|---|---|",
    ]
    for image in ("kit", "bare"):
        cold = results["rie"][image]["cold"]
        lines.append(
            f"| {image} | {cold['init_ms_median']} | {cold['init_ms_all']} | {cold['start_to_first_response_ms_median']} |"
        )
    lazy = results["rie"]["kit"]["cold"].get("first_openapi_request_ms_median")
    lines += [
        "",
        f"The first `GET /openapi.json` of a sandbox (imports FastAPI and Mangum, builds the app): {lazy} ms "
        "(REPORT Duration); model routes never pay it.",
    ]
    from bench import peers

    lines += ["", *peers.report_lines(results["peers"]), "Chart: `bench/results/peers.png`.", ""]
    sh = results["shadow"]
    lines += [
        "",
        "## Shadow testing: the live handler's latency, iris 1 row (µs)",
        "",
        "| shadow | p50 | p99 |",
        "|---|---|---|",
    ]
    for label in ("not configured", "configured, not sampled", "10 % mirrored", "every request mirrored"):
        lines.append(f"| {label} | {sh[label]['p50_us']} | {sh[label]['p99_us']} |")
    lines += [
        "",
        f"Decision overhead (p50): {sh['decision_overhead_us']} µs; 10 % mirrored: p50 "
        f"{sh['sample_10_percent_overhead_us']:+} µs, p99 {sh['sample_10_percent_p99_overhead_us']:+} µs; every "
        f"request: p50 {sh['every_request_overhead_us']:+} µs ({sh['mirrors_received']} batched invokes received, "
        f"{sh['mirrors_failed']} failed). The mirror thread's work competes with the handler for the CPU.",
    ]
    bt = results["batch"]
    lines += [
        "",
        f"## Batch: the container's JSON Lines path vs a reference pipeline ({bt['chunk']}-line chunks, one thread)",
        "",
        "Reference: orjson parse of the chunk -> numpy -> session.run -> orjson dump of each row. Container",
        "path: what /invocations does with an application/jsonlines body (per-line errors, labels).",
        "",
        "| model | lines | reference rows/s | container rows/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, b in bt["path"].items():
        lines.append(
            f"| {name} | {b['lines']:,} | {b['reference_rows_per_s']:,} | {b['container_rows_per_s']:,} | "
            f"{b['ratio']} |"
        )
    e2e = bt["end_to_end"]
    lines += [
        "",
        f"End to end, as a transform job runs (container process + local transform runner, "
        f"{e2e['requests']} MultiRecord requests of <= 6 MB): {e2e['lines']:,} lines "
        f"({e2e['input_mib']} MiB in, {e2e['output_mib']} MiB out) in {e2e['seconds']} s = "
        f"{e2e['rows_per_s']:,} rows/s; {e2e['output_lines']:,} output lines. Peak RSS: container "
        f"{e2e['container_peak_rss_mib']} MiB, runner {e2e['runner_peak_rss_mib']} MiB.",
    ]
    fp = results["footprint"]
    lines += [
        "",
        "## Footprint",
        "",
        f"Staged task root (this machine's wheels): kit {results['staged_mib']['kit']} MiB, "
        f"bare {results['staged_mib']['bare']} MiB.",
        "",
    ]
    for entry in fp:
        top = ", ".join(f"{k} {v}" for k, v in entry["packages_mib"].items())
        lines.append(
            f"- {entry['image']}, {entry['arch']}: {entry['total_mib']} MiB (CPython 3.12 wheels): {top}; "
            f"boto3: {entry['has_boto3']}"
        )
    if "large_model" in results:
        lines += ["", *large_model.report_lines(results["large_model"])]
    if "processing" in results:
        lines += ["", *processing_bench.report_lines(results["processing"])]
    if "scale" in results:
        lines += ["", *scale_bench.report_lines(results["scale"])]
    lines += ["", "## Targets", ""]
    for name, text in results["targets"].items():
        lines.append(f"- {name}: {text}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mdk benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for figures)")
    args = parser.parse_args(argv)
    n, warmup, cold, rie_n = (2000, 200, 2, 100) if args.quick else (20000, 2000, 9, 400)

    from mdk.local.rie import ensure_rie

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs",
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    with tempfile.TemporaryDirectory(prefix="mdk-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        made = bundles(tmp)
        print("in process ...", file=sys.stderr)
        results["inprocess"] = {}
        for key, model, count in (
            ("iris_1", "iris", 1),
            ("iris_64", "iris", 64),
            ("mlp_64", "mlp", 64),
            ("mlp_1", "mlp", 1),
        ):
            measured = inprocess.measure(
                made[model], rows_for(model, count), n=n if model == "iris" else n // 4, warmup=warmup
            )
            results["inprocess"][key] = {k: v.to_json() for k, v in measured.items()}
        results["powertools_emf_us"] = inprocess.powertools_flush(n=n, warmup=warmup).to_json()
        results["emf_served_us"] = inprocess.emf_served(n=n, warmup=warmup).to_json()

        print("under the emulator ...", file=sys.stderr)
        rie = ensure_rie(CACHE)
        from mdk.images import BARE, LAMBDA

        images = {
            "kit": (LAMBDA, {"iris": made["iris"], "mlp": made["mlp"]}),
            "bare": (BARE, {"iris": made["iris"], "mlp": made["mlp"]}),
        }
        results["rie"] = {"kit": {"warm": {}}, "bare": {"warm": {}}}
        staged: dict[str, dict[str, Any]] = {"kit": {}, "bare": {}}
        iris_events = {
            "iris, 1 row": event_for("iris", rows_for("iris", 1)),
            "iris, 64 rows": event_for("iris", rows_for("iris", 64)),
        }
        mlp_events = {"mlp, 64 rows": event_for("mlp", rows_for("mlp", 64))}
        for image_name, (recipe, model_dirs) in images.items():
            for model, bundle in model_dirs.items():
                image = stage(recipe, bundle, tmp / f"{image_name}-{model}")
                staged[image_name][model] = image
                warm = warm_under_rie(image, rie, iris_events if model == "iris" else mlp_events, n=rie_n)
                results["rie"][image_name]["warm"].update(warm)
        iris_images = {name: staged[name]["iris"] for name in ("kit", "bare")}
        docs = inprocess.api_event("/openapi.json", None, "GET")
        cold_results = cold_starts(iris_images, rie, iris_events["iris, 1 row"], docs, n=cold)
        results["staged_mib"] = {}
        for name in ("kit", "bare"):
            results["rie"][name]["cold"] = cold_results[name]
            results["staged_mib"][name] = staged_size(iris_images[name].task_root)
        for by_model in staged.values():
            for image in by_model.values():
                shutil.rmtree(image.root, ignore_errors=True)

    print("serving container vs BentoML and LitServe (wrk) ...", file=sys.stderr)
    from bench import peers

    results["peers"] = peers.measure(quick=args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    peers.chart(results["peers"], RESULTS / "peers.png")

    print("shadow ...", file=sys.stderr)
    from bench import shadow as shadow_bench

    with tempfile.TemporaryDirectory(prefix="mdk-bench-shadow-") as tmp_dir:
        results["shadow"] = shadow_bench.measure(bundles(Path(tmp_dir))["iris"], n=n // 5, warmup=warmup // 5)

    print("batch ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mdk-bench-batch-") as tmp_dir:
        results["batch"] = batch_figures(bundles(Path(tmp_dir)), Path(tmp_dir), quick=args.quick)

    print("a 100 MB+ model ...", file=sys.stderr)
    results["large_model"] = large_model.compare(n=2 if args.quick else 3)

    print("processing (real models) ...", file=sys.stderr)
    results["processing"] = processing_bench.compare(n=50 if args.quick else 200)

    print("scale (synth with 10, 50, 100 models; the local cloud with 20) ...", file=sys.stderr)
    results["scale"] = scale_bench.measure(quick=args.quick)

    print("footprint ...", file=sys.stderr)
    results["footprint"] = [footprint.install_size(arch) for arch in ("x86_64", "arm64")]
    sagemaker = REPO / "sagemaker_endpoints"
    results["footprint"] += [
        footprint.install_size(
            "x86_64", sagemaker / f"requirements-{device}.txt", f"sagemaker {device} image"
        )
        for device in ("cpu", "gpu")
    ]

    iris1 = results["inprocess"]["iris_1"]
    overhead = round(
        iris1[inprocess.HANDLER]["p50_us"] - iris1["raw session.run"]["p50_us"],
        1,
    )
    naive = (
        iris1["FastAPI + Mangum, same app (the naive path)"]["p50_us"] - iris1["raw session.run"]["p50_us"]
    )
    overhead_vs_naive = round(overhead / naive, 3)
    without_emf = round(
        iris1["handler without EMF metrics (dispatch + response)"]["p50_us"]
        - iris1["raw session.run"]["p50_us"],
        1,
    )
    init_ratio = round(
        results["rie"]["kit"]["cold"]["init_ms_median"] / results["rie"]["bare"]["cold"]["init_ms_median"], 2
    )
    mlp = results["inprocess"]["mlp_64"]
    mlp_ratio = round(mlp[inprocess.HANDLER]["p50_us"] / mlp["raw session.run"]["p50_us"], 2)
    raw_mlp = mlp["raw session.run"]["p50_us"]
    mlp_npy_ratio = round(mlp["handler, .npy body (base64 event)"]["p50_us"] / raw_mlp, 2)
    rie_warm = results["rie"]
    mlp_vs_bare = round(
        rie_warm["kit"]["warm"]["mlp, 64 rows"]["report_duration"]["p50_us"]
        / rie_warm["bare"]["warm"]["mlp, 64 rows"]["report_duration"]["p50_us"],
        2,
    )
    mlp_rie_ratio = round(
        results["rie"]["kit"]["warm"]["mlp, 64 rows"]["report_duration"]["p50_us"] / raw_mlp, 2
    )
    results["targets"] = {}
    results["targets"].update(
        {
            "batch, the container's JSON Lines path / the reference pipeline, iris": verdict_at_least(
                results["batch"]["path"]["iris"]["ratio"], TARGETS["batch_ratio"], unit="x"
            ),
            "batch, the same with the 1M-parameter MLP": verdict_at_least(
                results["batch"]["path"]["mlp"]["ratio"], TARGETS["batch_ratio"], unit="x"
            ),
            "warm in-process overhead, iris batch 1 (handler p50 - raw p50)": verdict(
                overhead, TARGETS["overhead_us"], unit=" µs"
            )
            + f"; without the Powertools EMF flush: {without_emf} µs",
            "the same overhead as a share of the naive FastAPI + Mangum route's, measured in this run": verdict(
                overhead_vs_naive, TARGETS["overhead_vs_naive"], unit=""
            ),
            "INIT under the RIE, kit / bare onnxruntime handler": verdict(
                init_ratio, TARGETS["init_ratio"], unit="x"
            ),
            "1M-parameter MLP, 64 rows, in-process handler / raw": verdict(
                mlp_ratio, TARGETS["mlp_ratio"], unit="x"
            ),
            "1M-parameter MLP, 64 rows as .npy, in-process handler / raw": verdict(
                mlp_npy_ratio, TARGETS["mlp_npy_ratio"], unit="x"
            ),
            "1M-parameter MLP, 64 rows JSON, under the RIE (REPORT Duration) / raw in process": verdict(
                mlp_rie_ratio, TARGETS["mlp_ratio"], unit="x"
            )
            + f"; the bare onnxruntime handler under the same emulator: kit / bare = {mlp_vs_bare}x",
        }
    )
    results["targets"].update(serving_targets(results["peers"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report_md(results)
    (RESULTS / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
