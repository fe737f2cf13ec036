"""The kit's SageMaker serving container against BentoML and LitServe, in one run, driven by wrk.

``measure(quick=..., device=...)`` takes the figures (a JSON-serialisable dict), ``report_lines(results)``
makes the Markdown tables, ``chart(results, path)`` the PNG; ``python -m bench.peers`` does all three.
The peers run from the benchmark-only venv .cache/bench-venv (requirements-bench.txt, never in an image).
"""

from __future__ import annotations

from bench.peers.report import chart, report_lines
from bench.peers.run import PeerError, measure

__all__ = ["PeerError", "chart", "measure", "report_lines"]
