"""The local API Gateway's HTTP edge, sent raw (sockets, http.client) at the deployed example: malformed
framing, chunked bodies, oversized headers and URLs, tampered SigV4 requests, API Gateway's 10 MB body
limit, Lambda's 6 MB event limit behind the proxy integration, and binary media types (``.npy``)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY, LocalCloud
from mdk.local.cloud.services import cloudwatch
from mdk.local.cloud.services.apigateway import Gateway
from mdk.local.cloud.services.lambda_ import Invocation
from tests.cloud.conftest import signed

FUNCTION = "mdk-dev-model-iris-ModelirisFunction426CCFF9"
ROWS = [[6.3, 3.4, 5.6, 2.4], [5.8, 2.7, 5.1, 1.9]]


def sign(url: str, body: bytes, headers: dict[str, str], *, method: str = "POST") -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def raw(cloud: LocalCloud, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are and read one HTTP answer."""
    with socket.create_connection(("127.0.0.1", cloud.gateway.port), timeout=60) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def predict_url(cloud: LocalCloud) -> str:
    return f"{cloud.gateway.url}models/iris/predict"


def post(
    cloud: LocalCloud, body: bytes, headers: dict[str, str], *, chunked: bool = False
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(predict_url(cloud))
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
    try:
        if chunked:
            conn.request(
                "POST", url.path, body=iter([body[:10], body[10:]]), headers=headers, encode_chunked=True
            )
        else:
            conn.request("POST", url.path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def kit_error(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert set(document) == {"error"}, document
    return dict(document["error"])


# --------------------------------------------------------------------------------------- framing


def test_a_content_length_that_is_not_a_number_is_a_400_in_the_kits_shape(cloud: LocalCloud) -> None:
    path = urlsplit(predict_url(cloud)).path
    status, headers, body = raw(
        cloud,
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: ten\r\n\r\n{}".encode(),
    )
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert kit_error(body)["code"] == "client_error"
    assert "Content-Length" in kit_error(body)["message"]


def test_both_content_length_and_chunked_is_a_400(cloud: LocalCloud) -> None:
    path = urlsplit(predict_url(cloud)).path
    status, _, body = raw(
        cloud,
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".encode(),
    )
    assert status == 400
    assert kit_error(body)["code"] == "client_error"


def test_a_chunked_body_is_read_and_predicted(cloud: LocalCloud) -> None:
    body = json.dumps({"instances": ROWS}).encode()
    headers = sign(predict_url(cloud), body, {"Content-Type": "application/json"})
    status, _, answer = post(cloud, body, headers, chunked=True)
    assert status == 200, answer
    assert [p["label"] for p in json.loads(answer)["predictions"]] == ["virginica", "virginica"]


def test_oversized_headers_and_urls_get_api_gateways_limits_in_json(cloud: LocalCloud) -> None:
    path = urlsplit(predict_url(cloud)).path
    big = "x" * 11_000  # the request line and headers together: at most 10,240 bytes
    status, headers, body = raw(cloud, f"GET {path} HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n".encode())
    assert (status, headers["content-type"]) == (431, "application/json")
    assert kit_error(body)["message"] == "Request Header Fields Too Large"
    huge = "y" * 70_000  # past http.server's own 64 KiB line limit: its HTML page before
    status, headers, body = raw(cloud, f"GET {path} HTTP/1.1\r\nHost: h\r\nX-Huge: {huge}\r\n\r\n".encode())
    assert (status, headers["content-type"]) == (431, "application/json")
    assert kit_error(body)["code"] == "client_error"
    status, headers, body = raw(cloud, f"GET {path}?q={big} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert (status, headers["content-type"]) == (414, "application/json")
    assert kit_error(body)["message"] == "Request-URI Too Long"
    status, headers, body = raw(cloud, f"GET {path}?q={huge} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert (status, headers["content-type"]) == (414, "application/json")


# ------------------------------------------------------------------------------------------ SigV4


def test_a_body_changed_after_signing_is_refused(cloud: LocalCloud) -> None:
    """A client may sign X-Amz-Content-Sha256 (the body's hash) among its headers; the gateway must hash the
    body it received, so a body changed in transit fails the signature even though the header is signed."""
    body = json.dumps({"instances": ROWS}).encode()
    claimed = {"Content-Type": "application/json", "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    headers = sign(predict_url(cloud), body, claimed)
    assert "x-amz-content-sha256" in headers["Authorization"]  # the hash header is signed
    status, _, answer = post(cloud, body, headers)
    assert status == 200, answer  # as signed: answered
    tampered = json.dumps({"instances": [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]}).encode()
    status, _, answer = post(cloud, tampered, headers)
    assert status == 403
    assert "signature" in kit_error(answer)["message"]
    headers = sign(predict_url(cloud), body, {"Content-Type": "application/json"})
    status, _, answer = post(cloud, tampered, headers)  # without the header: the body is hashed too
    assert status == 403


def test_a_signature_that_leaves_out_host_is_refused(cloud: LocalCloud) -> None:
    url = f"{cloud.gateway.url}models/iris/health"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(method="GET", url=url, headers={"X-Amz-Date": stamp})

    class NoHost(SigV4Auth):  # type: ignore[misc]
        def headers_to_sign(self, request: AWSRequest) -> Any:
            headers = super().headers_to_sign(request)
            del headers["host"]
            return headers

    NoHost(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", "us-east-1").add_auth(request)
    assert "host" not in request.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname or "", split.port, timeout=60)
    conn.request("GET", split.path, headers=dict(request.headers.items()))
    response = conn.getresponse()
    status, answer = response.status, response.read()
    conn.close()
    assert status == 403
    assert "host" in kit_error(answer)["message"].lower()
    status, _, _ = signed(url)  # the same call signed properly is answered
    assert status == 200


# ------------------------------------------------------------------------------------- body limits


def test_a_body_over_10_mb_is_api_gateways_413(cloud: LocalCloud) -> None:
    body = b"[" + b"1," * (5 * 1024 * 1024 + 10) + b"1]"
    headers = sign(predict_url(cloud), body, {"Content-Type": "application/json"})
    status, response_headers, answer = post(cloud, body, headers)
    assert status == 413
    assert response_headers["x-amzn-errortype"] == "REQUEST_TOO_LARGE"
    assert kit_error(answer) == {"code": "payload_too_large", "message": "Request Too Long"}


def test_a_7_mb_body_is_refused_by_lambda_before_the_function_runs(cloud: LocalCloud) -> None:
    """Between Lambda's 6 MB and API Gateway's 10 MB: Lambda refuses the invocation, API Gateway answers
    its documented 500 (in the stack's DEFAULT_5XX shape), and the function records nothing, so no
    rollback alarm can count a client's oversized body against the live version."""
    row = "[6.3, 3.4, 5.6, 2.4],"
    body = ('{"instances": [' + row * (7 * 1024 * 1024 // len(row)) + "[6.3, 3.4, 5.6, 2.4]]}").encode()
    assert 7 * 1024 * 1024 - 100 < len(body) < 10 * 1024 * 1024
    seen: list[Invocation] = []
    cloud.runner.observers.append(lambda result, _alias: seen.append(result))
    started = datetime.now(UTC)
    try:
        headers = sign(predict_url(cloud), body, {"Content-Type": "application/json"})
        status, _, answer = post(cloud, body, headers)
    finally:
        cloud.runner.observers.pop()
    assert status == 500
    assert kit_error(answer) == {"code": "gateway_error", "message": "Internal server error"}
    assert [r for r in seen if r.function == FUNCTION] == []  # the function was not invoked
    cloud.metrics.flush()
    for metric in ("Invocations", "Errors"):
        samples = cloudwatch.metric_values(
            cloud.region, "AWS/Lambda", metric, {"FunctionName": FUNCTION}, started
        )
        assert samples.count == 0, metric
    alarms = [
        a["AlarmName"]
        for a in cloud.session.client("cloudwatch").describe_alarms()["MetricAlarms"]
        if a.get("MetricName") == "Errors" and a.get("Namespace") == "AWS/Lambda"
    ]
    assert alarms
    states = cloud.alarms.evaluate(alarms)
    assert "ALARM" not in states.values(), states


# ---------------------------------------------------------------------------------- binary media


def npy(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_an_npy_body_reaches_the_function_base64_encoded_and_predicts(cloud: LocalCloud) -> None:
    url = predict_url(cloud)
    status, _, by_json = signed(
        url,
        method="POST",
        body=json.dumps({"instances": ROWS}).encode(),
        headers={"content-type": "application/json"},
    )
    assert status == 200, by_json
    body = npy(np.asarray(ROWS, dtype=np.float32))
    status, _, answer = signed(
        url,
        method="POST",
        body=body,
        headers={"content-type": "application/x-npy", "accept": "application/json"},
    )
    assert status == 200, answer
    tensors, predictions = json.loads(answer), json.loads(by_json)["predictions"]
    assert [tensors["labels"][i] for i in tensors["outputs"]["label"]] == [p["label"] for p in predictions]
    expected = [[p["probabilities"][label] for label in tensors["labels"]] for p in predictions]
    assert np.allclose(tensors["outputs"]["probabilities"], expected, rtol=1e-6)


def test_a_base64_answer_is_decoded_only_when_accept_is_a_binary_media_type() -> None:
    """API Gateway's content handling for a Lambda proxy answer flagged isBase64Encoded: binary when the
    request's Accept is one of the API's binary media types, the base64 text otherwise."""
    payload = npy(np.arange(4, dtype=np.float32))

    class Runner:
        def invoke(self, *_: Any, **__: Any) -> Invocation:
            answer = {
                "statusCode": 200,
                "headers": {"content-type": "application/x-npy"},
                "isBase64Encoded": True,
                "body": base64.b64encode(payload).decode(),
            }
            return Invocation("f", "1", json.dumps(answer).encode(), False, 1.0)

    gateway = Gateway.__new__(Gateway)
    gateway.runner = Runner()  # type: ignore[assignment]
    for accept, expected in (("application/x-npy", payload), ("application/json", base64.b64encode(payload))):
        event = {"headers": {"accept": accept}, "requestContext": {"requestId": "r"}}
        status, _, body = gateway._lambda(
            "arn:aws:lambda:us-east-1:1:function:f:live", event, {}, ("application/x-npy",)
        )
        assert (status, body) == (200, expected)
