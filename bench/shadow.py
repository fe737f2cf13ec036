"""What shadow testing costs the caller: the Lambda handler's warm latency (iris, 1 row) with shadowing
not configured, configured but not sampled (the decision: the setting from Powertools' cache and a
draw), and mirroring 10 % and every request (the decision and an enqueue; a background thread builds
and sends the asynchronous invoke to a local endpoint that answers as Lambda's Invoke API does). The
mirror thread shares the interpreter (and a small function's CPU share) with the handler, so its
work shows up in the caller's latency as contention: the figures say how much.

SSM is moto in process; the candidate's endpoint is a loopback HTTP server. ``python -m bench.shadow``
prints the figures alone.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PARAMETER = "/mdk/bench/dev/shadow/iris"


class _Invoke(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).count += 1
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def measure(bundle: Path, *, n: int = 4000, warmup: int = 400) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from bench.inprocess import api_event, time_interleaved
    from lambda_handlers import inference, shadow
    from mdk_runtime.service import InferenceService, Settings
    from tests.events import FakeLambdaContext

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Invoke)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{server.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": "bench-iris",
            "AWS_LAMBDA_FUNCTION_VERSION": "2",
        }
    )
    try:
        with mock_aws():
            ssm = boto3.client("ssm")
            service = InferenceService.load(Settings(model_dir=bundle, threads=1))
            event = api_event("/models/iris/predict", json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
            context = FakeLambdaContext()

            def setting(sample: float) -> None:
                value = json.dumps({"candidate": "3", "sample": sample})
                ssm.put_parameter(Name=PARAMETER, Value=value, Type="String", Overwrite=True)
                shadow.forget()

            def call() -> None:
                inference.handler(event, context, service=service)

            results = {}
            os.environ.pop(shadow.PARAMETER_ENV, None)
            results["not configured"] = time_interleaved({"": call}, n=n, warmup=warmup)[""]
            os.environ[shadow.PARAMETER_ENV] = PARAMETER
            setting(0.0)
            results["configured, not sampled"] = time_interleaved({"": call}, n=n, warmup=warmup)[""]
            setting(0.1)
            results["10 % mirrored"] = time_interleaved({"": call}, n=n, warmup=warmup)[""]
            shadow.mirror().drain(timeout=60)
            setting(1.0)
            results["every request mirrored"] = time_interleaved({"": call}, n=n, warmup=warmup)[""]
            shadow.mirror().drain(timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        os.environ.clear()
        os.environ.update(saved)
    base = results["not configured"].p50_us
    return {
        **{name: s.to_json() for name, s in results.items()},
        "decision_overhead_us": round(results["configured, not sampled"].p50_us - base, 1),
        "sample_10_percent_overhead_us": round(results["10 % mirrored"].p50_us - base, 1),
        "sample_10_percent_p99_overhead_us": round(
            results["10 % mirrored"].p99_us - results["not configured"].p99_us, 1
        ),
        "every_request_overhead_us": round(results["every request mirrored"].p50_us - base, 1),
        "mirrors_received": _Invoke.count,
        "mirrors_failed": shadow.mirror().failed,
    }


if __name__ == "__main__":
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    import tempfile

    from bench.__main__ import bundles

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(bundles(Path(tmp))["iris"]), indent=1))
    sys.exit(0)
