"""``python -m bench.peers [--quick] [--device cpu|gpu] [--out DIR] [--lock FILE]``: peers.json, peers.md,
peers.png in DIR (bench/results by default; bench/results/gpu with --device gpu). Exit 1 when a server's
figures were dropped (wrong answers, wrk errors), 2 when --device gpu has no CUDA provider."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.peers.report import chart, report_lines
from bench.peers.run import REPO, PeerError, cuda_available, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round of 2 s wrk runs (a smoke run)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="where peers.json/.md/.png go")
    parser.add_argument("--lock", type=Path, default=None, help="flock this file around each model's round")
    args = parser.parse_args(argv)
    if args.device == "gpu" and not cuda_available():
        print("error: --device gpu needs onnxruntime with the CUDA provider (onnxruntime-gpu) and an NVIDIA GPU; "
              "`make bench-gpu` builds that environment", file=sys.stderr)  # fmt: skip
        return 2
    out = args.out or (REPO / "bench" / "results" / ("gpu" if args.device == "gpu" else ""))
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = measure(quick=args.quick, device=args.device, lock=args.lock, log_dir=out / "peer-logs")
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (out / "peers.json").write_text(json.dumps(results, indent=2) + "\n")
    text = "\n".join(report_lines(results)) + "\n"
    (out / "peers.md").write_text(text)
    chart(results, out / "peers.png")
    print(text)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # run as a program only, not on import
    sys.exit(main())
