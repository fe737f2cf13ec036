"""Shadow testing: the CLI's setting, the live function's mirroring decision and the candidate's
comparison, with the real handler code; SageMaker's shadow variant through a new endpoint config."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from botocore.awsrequest import AWSResponse

from lambda_handlers import inference, shadow
from mdk.ops import shadow as shadow_ops
from mdk.ops.context import Ops, OpsError
from mdk.registry import Deployed, SageMakerTopology, model_parameter, shadow_parameter
from mdk_runtime.service import InferenceService
from tests.events import FakeLambdaContext, api_event
from tests.ops.conftest import FUNCTION, PROJECT, REPO, STAGE, Topology

SETTING = shadow_parameter(PROJECT, STAGE, "iris")


def test_start_stop_and_refusals(topology: Topology, mdk: Any) -> None:
    started = mdk("shadow", "start", "iris", "--candidate", "3", "--sample", "0.5")
    assert started.code == 0
    assert started.stdout.strip() == "iris: shadow on: 50 % of the requests to version 2 mirrored to 3"
    setting = topology.parameter(SETTING)
    assert (setting["candidate"], setting["sample"]) == ("3", 0.5)
    status = mdk("status", "iris", "--json").json()[0]
    assert status["shadow"] == {"candidate": "3", "sample": 0.5}

    live = mdk("shadow", "start", "iris", "--candidate", "2")
    assert "version 2 already serves iris's traffic" in live.stderr
    assert "has no version '7'" in mdk("shadow", "start", "iris", "--candidate", "7").stderr
    assert (
        "--sample: expected a fraction"
        in mdk("shadow", "start", "iris", "--candidate", "3", "--sample", "1.5").stderr
    )

    stopped = mdk("shadow", "stop", "iris", "--json")
    assert stopped.code == 0
    assert stopped.json()["on"] is False
    assert topology.parameter(SETTING).get("candidate") is None
    assert "no shadow running for iris" in mdk("shadow", "report", "iris").stderr


def test_report_reads_the_candidates_metrics(topology: Topology, mdk: Any) -> None:
    dimensions = [
        {"Name": "Model", "Value": "iris"},
        {"Name": "CandidateVersion", "Value": "3"},
        {"Name": "service", "Value": "mdk-inference"},
    ]
    data = []
    for agreement, latency, live in (
        (100.0, 4.0, 3.0),
        (50.0, 6.0, 3.0),
        (100.0, 5.0, 3.0),
        (100.0, 5.0, 3.0),
    ):
        data += [
            {"MetricName": "ShadowSamples", "Dimensions": dimensions, "Value": 1, "Unit": "Count"},
            {
                "MetricName": "ShadowAgreement",
                "Dimensions": dimensions,
                "Value": agreement,
                "Unit": "Percent",
            },
            {
                "MetricName": "ShadowLatency",
                "Dimensions": dimensions,
                "Value": latency,
                "Unit": "Milliseconds",
            },
            {
                "MetricName": "ShadowLiveLatency",
                "Dimensions": dimensions,
                "Value": live,
                "Unit": "Milliseconds",
            },
        ]
    data.append({"MetricName": "ShadowMaxAbsDiff", "Dimensions": dimensions, "Value": 0.25})
    topology.client("cloudwatch").put_metric_data(Namespace="mdk", MetricData=data)

    report = mdk("shadow", "report", "iris", "--candidate", "3", "--hours", "1", "--json")

    assert report.code == 0, report.stderr
    assert report.json() | {"hours": 1} == {
        "model": "iris",
        "candidate": "3",
        "hours": 1,
        "samples": 4,
        "agreement_percent": 87.5,
        "max_abs_diff": 0.25,
        "candidate_latency_ms": 5.0,
        "live_latency_ms": 3.0,
        "latency_delta_ms": 2.0,
        "errors": 0,
    }
    assert "agreement percent" in mdk("shadow", "report", "iris", "--candidate", "3").stdout


# -- the function's side -------------------------------------------------------------------------


class _LambdaApi(BaseHTTPRequestHandler):
    """Lambda's Invoke API as far as an asynchronous invoke needs it: record the call, answer 202."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).calls.append(
            {
                "path": self.path,
                "type": self.headers.get("X-Amz-Invocation-Type"),
                "payload": json.loads(self.rfile.read(length)),
            }
        )
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def lambda_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    _LambdaApi.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LambdaApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{server.server_address[1]}")
    yield _LambdaApi.calls
    server.shutdown()
    server.server_close()


@pytest.fixture
def live_function(topology: Topology, lambda_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment Lambda and the stack give version 2 of the iris function."""
    monkeypatch.setenv(shadow.PARAMETER_ENV, SETTING)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "2")
    shadow.forget()
    parameters_base.DEFAULT_PROVIDERS.clear()  # type: ignore[attr-defined]  # clients of earlier endpoints
    shadow.mirror.cache_clear()


def call_live(service: InferenceService, rows: list[list[float]]) -> dict[str, Any]:
    event = api_event("v1", body=json.dumps({"instances": rows}))
    response: dict[str, Any] = inference.handler(event, FakeLambdaContext(), service=service)
    shadow.mirror().drain()
    return response


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def start_shadow(topology: Topology) -> None:
    """The setting `mdk shadow start iris --candidate 3 --sample 1` writes (the CLI is tested above;
    here Lambda's endpoint is the recording server, which the CLI's own Lambda calls would hit)."""
    value = json.dumps({"candidate": "3", "sample": 1.0})
    topology.client("ssm").put_parameter(Name=SETTING, Value=value, Type="String", Overwrite=True)
    shadow.forget()  # the function sees a change within 30 s


def test_the_live_version_mirrors_a_sample_to_the_candidate(
    live_function: None,
    topology: Topology,
    mdk: Any,
    lambda_api: list[dict[str, Any]],
    iris_service: InferenceService,
) -> None:
    assert call_live(iris_service, ROWS)["statusCode"] == 200
    assert lambda_api == []  # shadow off: nothing mirrored

    start_shadow(topology)  # as `mdk shadow start iris --candidate 3 --sample 1` does
    response = call_live(iris_service, ROWS)

    assert response["statusCode"] == 200
    [call] = lambda_api
    assert call["path"] == f"/2015-03-31/functions/{FUNCTION}%3A3/invocations"
    assert call["type"] == "Event"  # asynchronous: the caller never waits for the candidate
    [mirrored] = call["payload"][shadow.EVENT_KEY]  # a batch of one: all there was within a second
    assert json.loads(base64.b64decode(mirrored["body"])) == {"instances": ROWS}
    assert mirrored["live"] == json.loads(response["body"])
    assert mirrored["live_version"] == "2"
    assert mirrored["live_ms"] > 0


def test_mirroring_decisions(live_function: None, topology: Topology, lambda_api: list[dict[str, Any]],
                             iris_service: InferenceService, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    ssm = topology.client("ssm")

    def setting(value: dict[str, Any]) -> None:
        ssm.put_parameter(Name=SETTING, Value=json.dumps(value), Type="String", Overwrite=True)
        shadow.forget()

    setting({"candidate": "3", "sample": 0.0})
    call_live(iris_service, ROWS)
    setting({"candidate": "2", "sample": 1.0})  # the version serving: never mirrored to itself
    call_live(iris_service, ROWS)
    setting({"candidate": "3", "sample": 1.0})
    bad = api_event("v1", body=json.dumps({"instances": [[1.0]]}))  # a 4xx is not mirrored
    assert inference.handler(bad, FakeLambdaContext(), service=iris_service)["statusCode"] == 422
    shadow.mirror().drain()
    assert lambda_api == []
    ssm.delete_parameter(Name=SETTING)  # unreadable: off, and serving goes on
    shadow.forget()
    assert call_live(iris_service, ROWS)["statusCode"] == 200
    assert lambda_api == []
    assert shadow.should_mirror(shadow.Setting("3", 0.1), "2", 0.05)
    assert not shadow.should_mirror(shadow.Setting("3", 0.1), "2", 0.5)


def test_the_candidate_compares_and_reports(
    live_function: None, lambda_api: list[dict[str, Any]], iris_service: InferenceService,
    service: Any, topology: Topology, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    start_shadow(topology)
    call_live(iris_service, ROWS)
    [call] = lambda_api
    capsys.readouterr()

    # Version 3 of the function runs the gradient-boosted iris model (models/iris/v2).
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "3")
    candidate = service(
        REPO / "models" / "iris" / "v2" / "model.onnx",
        name="iris",
        labels=["setosa", "versicolor", "virginica"],
    )
    result = inference.handler(call["payload"], FakeLambdaContext(), service=candidate)

    assert result["compared"] == 1
    assert result["errors"] == 0
    assert result["instances"] == 3
    assert result["agreeing"] == 3  # both models label these three rows alike
    assert 0 < result["max_abs_diff"] < 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [emf] = [r for r in records if "ShadowAgreement" in r]
    assert emf["ShadowAgreement"] == [100.0] or emf["ShadowAgreement"] == 100.0
    assert emf["CandidateVersion"] == "3"
    assert emf["Model"] == "iris"
    assert {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "ShadowSamples", "ShadowAgreement", "ShadowLatency", "ShadowLiveLatency", "ShadowMaxAbsDiff",
    }  # fmt: skip
    assert lambda_api == [call]  # the candidate never mirrors again


def test_comparison() -> None:
    live = {
        "predictions": [
            {"label": "a", "probabilities": {"a": 0.9, "b": 0.1}},
            {"label": "b", "probabilities": {"a": 0.2, "b": 0.8}},
        ]
    }
    other = {
        "predictions": [
            {"label": "a", "probabilities": {"a": 0.7, "b": 0.3}},
            {"label": "a", "probabilities": {"a": 0.6, "b": 0.4}},
        ]
    }
    result = shadow.compare(live, other)
    assert (result.instances, result.agreeing, result.agreement_percent) == (2, 1, 50.0)
    assert result.max_abs_diff == pytest.approx(0.4)
    numbers = shadow.compare(
        {"predictions": [[1.0, 2.0], [3.0, 4.0]]}, {"predictions": [[1.0, 2.0], [3.0, 4.5]]}
    )
    assert (numbers.agreeing, numbers.max_abs_diff) == (1, 0.5)
    assert shadow.compare({"predictions": [1]}, {"error": {}}).agreeing == 0


# -- SageMaker ---------------------------------------------------------------------------------------


def test_sagemaker_shadow_needs_one_production_variant(topology: Topology, mdk: Any) -> None:
    result = mdk("shadow", "start", "digits", "--candidate", "digits-candidate", "--sample", "0.2")
    assert result.code == 2
    assert (
        "a shadow variant needs exactly one production variant (SageMaker's rule); digits has 2"
        in result.stderr
    )


def test_sagemaker_shadow_variant_through_a_new_endpoint_config(topology: Topology) -> None:
    """moto has no UpdateEndpoint and drops shadow variants: the requests are read at the client."""
    sagemaker = topology.client("sagemaker")
    sagemaker.create_endpoint_config(
        EndpointConfigName="solo-1",
        ProductionVariants=[{"VariantName": "primary", "ModelName": "digits-primary", "InstanceType": "ml.g4dn.xlarge",
                             "InitialInstanceCount": 2, "InitialVariantWeight": 1.0}],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName="solo", EndpointConfigName="solo-1")
    entry = Deployed(model="solo", runtime="sagemaker", version="x", api_url="", alarms=[], shadow_parameter="",
                     sagemaker=SageMakerTopology(endpoint_name="solo", variants=["primary"]))  # fmt: skip
    topology.client("ssm").put_parameter(
        Name=model_parameter(PROJECT, STAGE, "solo"), Value=json.dumps(entry.to_json()), Type="String"
    )
    ops = Ops(project=PROJECT, stage=STAGE)
    sent: dict[str, Any] = {}
    client = ops.client("sagemaker")
    client.meta.events.register(
        "provide-client-params.sagemaker.CreateEndpointConfig",
        lambda params, **_: sent.setdefault("config", params),
    )

    def update_endpoint(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        sent["update"] = params  # what SageMaker would receive; answered as SageMaker answers
        arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/solo"
        return AWSResponse("https://sagemaker", 200, {}, None), {"EndpointArn": arn}

    client.meta.events.register("before-call.sagemaker.UpdateEndpoint", update_endpoint)

    result = shadow_ops.start(ops, "solo", "digits-candidate", 0.2)

    config = sent["config"]
    assert config["ProductionVariants"][0]["ModelName"] == "digits-primary"
    assert config["ShadowProductionVariants"] == [
        {"VariantName": "shadow", "ModelName": "digits-candidate", "InstanceType": "ml.g4dn.xlarge",
         "InitialInstanceCount": 1, "InitialVariantWeight": 0.2}
    ]  # fmt: skip
    assert json.loads(sent["update"]["body"])["EndpointConfigName"] == result.endpoint_config
    with pytest.raises(OpsError, match="no shadow variant"):
        shadow_ops.stop(ops, "solo")  # moto dropped it, as far as describe tells
    with pytest.raises(OpsError, match=r"ResourceNotFound|Could not find model"):
        shadow_ops.start(ops, "solo", "no-such-model", 0.2)


def test_mirrors_travel_in_batches(
    live_function: None, topology: Topology, lambda_api: list[dict[str, Any]], iris_service: InferenceService
) -> None:
    """One asynchronous invoke carries the mirrors of many requests (its cost is shared)."""
    start_shadow(topology)
    event = api_event("v1", body=json.dumps({"instances": ROWS}))
    for _ in range(7):
        assert inference.handler(event, FakeLambdaContext(), service=iris_service)["statusCode"] == 200
    shadow.mirror().drain()
    records = [r for call in lambda_api for r in call["payload"][shadow.EVENT_KEY]]
    assert len(records) == 7
    assert len(lambda_api) < 7  # batched (one invoke, unless a second of wall time split them)
    assert shadow.mirror().sent == 7
