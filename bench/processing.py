"""What a model's processing costs per request, against the inference itself (``make bench``).

The image example (``text-direction`` in ``models/pretrained.yaml``: PaddleOCR's direction classifier,
declared image processing) and a handler example (``file-type``: Magika's byte features), each with a
real sample input, loaded as their images load them (bundle, ``InferenceService.load``). Per request, in
the same process and taking turns, p50 of many calls:

* ``raw``: ``session.run`` on the tensor the processing produced (the inference alone);
* ``preprocess``: the request's bytes into that tensor (decode, resize, normalise / byte features);
* ``postprocess``: the outputs into the answer (top-k labels / Magika's rules);
* ``service.predict``: the whole request, bytes in, JSON bytes out.

Run alone: ``python -m bench.processing``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import summarize

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "models" / "pretrained.yaml"
CASES = (
    ("text-direction", "text-direction/samples/upside-down.png", "image/png"),
    ("file-type", "file-type/samples/page.pdf", "application/octet-stream"),
)


def _p50_us(call: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return round(summarize(samples).p50_us, 1)


def measure_case(name: str, sample: str, content_type: str, *, n: int, rounds: int = 3) -> dict[str, Any]:
    from mdk.bundle import write_bundle
    from mdk.config import load_config
    from mdk_runtime.service import InferenceService, Settings

    model = load_config(CONFIG).model(name)
    body = (CONFIG.parent / sample).read_bytes()
    with tempfile.TemporaryDirectory(prefix="mdk-bench-processing-") as tmp:
        service = InferenceService.load(Settings(model_dir=write_bundle(model, Path(tmp) / name), threads=1))
        assert service.model is not None
        assert service.processor is not None
        loaded, processor = service.model, service.processor
        (group,) = processor.preprocess([body], lambda _i: "body")
        outputs = loaded.run(group.feeds, group.n)
        names = [o.graph_name for o in loaded.signature.outputs]

        def raw() -> Any:
            return loaded.session.run(names, group.feeds)

        def pre() -> Any:
            return processor.preprocess([body], lambda _i: "body")

        def post() -> Any:
            return processor.answers([group], [outputs], [body], 1)

        def whole() -> Any:
            reply = service.predict(body, content_type, "application/json")
            assert reply.status == 200, reply.body
            return reply

        for call in (raw, pre, post, whole):  # warm every path first
            for _ in range(20):
                call()
        figures: dict[str, list[float]] = {"raw": [], "preprocess": [], "postprocess": [], "predict": []}
        for _ in range(rounds):  # taking turns, so the VM's drift hits all alike
            for key, call in (("raw", raw), ("preprocess", pre), ("postprocess", post), ("predict", whole)):
                figures[key].append(_p50_us(call, n))
        answer = json.loads(whole().body)["predictions"][0]
    row: dict[str, Any] = {k: sorted(v)[len(v) // 2] for k, v in figures.items()}
    row.update(
        model=name,
        sample=sample,
        bytes=len(body),
        answer=answer.get("label"),
        processing_over_inference=round((row["preprocess"] + row["postprocess"]) / row["raw"], 2),
        predict_over_raw=round(row["predict"] / row["raw"], 2),
    )
    return row


def compare(*, n: int = 200) -> dict[str, Any]:
    """Both cases; a missing example graph (``make models`` not run) is reported, not fatal."""
    rows = []
    for name, sample, content_type in CASES:
        try:
            rows.append(measure_case(name, sample, content_type, n=n))
        except FileNotFoundError as exc:
            rows.append({"model": name, "skipped": f"{exc}; run `make models`"})
    return {"rows": rows, "n": n}


def report_lines(figures: dict[str, Any]) -> list[str]:
    lines = [
        "## Processing: what it costs per request against the inference",
        "",
        f"Real models and inputs (`models/pretrained.yaml`), one onnxruntime thread, p50 of {figures['n']} "
        "calls in µs (median of 3 rounds taking turns). `raw` is `session.run` on the tensor the processing "
        "made; `predict` is the whole request, bytes in, JSON out.",
        "",
        "| model (input) | raw inference | preprocess | postprocess | predict | processing / inference | "
        "predict / raw | answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in figures["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['model']} | skipped: {row['skipped']} | | | | | | |")
            continue
        lines.append(
            f"| {row['model']} ({Path(row['sample']).name}, {row['bytes']:,} B) | {row['raw']} | "
            f"{row['preprocess']} | {row['postprocess']} | {row['predict']} | "
            f"{row['processing_over_inference']}x | {row['predict_over_raw']}x | {row['answer']} |"
        )
    return lines


def main() -> int:
    figures = compare()
    print("\n".join(report_lines(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
