"""Per-model access through the local cloud, in each auth mode (``api.auth``): the stacks as synthesized,
deployed onto the local AWS, called through the local API Gateway, which decides as API Gateway does
(mdk.local.cloud.services.gateway_access). Two Lambda models, ``iris`` and a copy of it, ``iris-copy``;
a caller allowed on ``iris`` is served by it and refused by ``iris-copy``:

* ``iam``: an IAM user with the stack's managed policy for ``iris`` attached (``<prefix>-invoke-iris``)
  signs with its own key: 200 on iris, 403 ACCESS_DENIED on iris-copy naming the user and the method ARN;
* ``api_key``: the consumer ``iris-team`` (models: iris) has its own key and usage plan: 200 on iris,
  403 Forbidden on iris-copy, whose stage its plan does not list;
* ``cognito``: the consumer's app client gets a client-credentials access token from the local token
  endpoint with the scope of iris: 200 on iris, 401 on iris-copy, whose methods require its own scope.

One cloud per auth mode (module scope, one at a time: a process runs one local cloud).
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mdk.local.cloud.cloud import LocalCloud
from mdk.local.cloud.moto_adapter import ACCOUNT
from stacks.access import invoke_policy_name, model_scope
from tests.cloud.conftest import MINUTE_S, REPO, call

ALLOWED, OTHER = "iris", "iris-copy"
PROJECT, STAGE, REGION = "mdk", "dev", "us-east-1"
PREFIX = f"{PROJECT}-{STAGE}"
POOL_ID = "us-east-1_LocalPool1"
POOL_ARN = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{POOL_ID}"
EXAMPLE = (REPO / "models/iris/v1/example.json").read_bytes()
ACCESS: dict[str, dict[str, Any]] = {
    "iam": {"auth": "iam"},
    "api_key": {"auth": "api_key", "consumers": [{"name": "iris-team", "models": [ALLOWED]}]},
    "cognito": {
        "auth": "cognito",
        "cognito_user_pool_arn": POOL_ARN,
        "consumers": [{"name": "iris-team", "models": [ALLOWED]}],
    },
}


def config(directory: Path, auth: str) -> Path:
    """models.yaml with its Lambda model twice (iris, iris-copy), absolute paths, and ``api`` as given."""
    document = yaml.safe_load((REPO / "models.yaml").read_text())
    iris = next(m for m in document["models"] if m["name"] == ALLOWED)
    for key in ("artifact", "example"):
        iris[key] = str(REPO / iris[key])
    document["models"] = [iris, {**json.loads(json.dumps(iris)), "name": OTHER}]
    document["default_model"] = ALLOWED
    document["project"] = PROJECT
    document["api"] = {**document.get("api", {}), **ACCESS[auth]}
    path = directory / "models.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class Deployed:
    auth: str
    cloud: LocalCloud

    def url(self, model: str) -> str:
        return f"{self.cloud.gateway.url}models/{model}/predict"

    def outputs(self) -> dict[str, str]:
        assert self.cloud.ready is not None
        return {k: v for stack in self.cloud.ready.stacks for k, v in stack.outputs.items()}

    def client(self, service: str) -> Any:
        return self.cloud.session.client(service)


@pytest.fixture(scope="module", params=sorted(ACCESS))
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auth = str(request.param)
    path = config(tmp_path_factory.mktemp(f"access-{auth}"), auth)
    local = LocalCloud(config=path, work=tmp_path_factory.mktemp(f"access-{auth}-work"), minute_s=MINUTE_S)
    local.start()
    try:
        local.deploy()
        yield Deployed(auth, local)
    finally:
        local.stop()


def predict(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    status, out, raw = call(
        url, method="POST", body=EXAMPLE, headers={"content-type": "application/json", **headers}
    )
    return status, {k.lower(): v for k, v in out.items()}, json.loads(raw)


# ------------------------------------------------------------------------------ each mode's caller


def iam_user_of_the_model_policy(deployed: Deployed) -> Credentials:
    """An IAM user with the stack's managed policy for the allowed model, and the user's own key."""
    iam = deployed.client("iam")
    name = invoke_policy_name(PREFIX, ALLOWED)
    policies = iam.list_policies(Scope="Local")["Policies"]
    arn = next(p["Arn"] for p in policies if p["PolicyName"] == name)
    users = {u["UserName"] for u in iam.list_users()["Users"]}
    if "iris-caller" not in users:
        iam.create_user(UserName="iris-caller")
        iam.attach_user_policy(UserName="iris-caller", PolicyArn=arn)
    key = iam.create_access_key(UserName="iris-caller")["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def sigv4(credentials: Credentials, url: str) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=EXAMPLE, headers={"content-type": "application/json"})
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return dict(request.prepare().headers)


def consumer_key(deployed: Deployed) -> str:
    """The consumer's API key value, as its output tells how to read it."""
    key_id = next(v for k, v in deployed.outputs().items() if "ApiKeyId" in k and "IrisTeam" in k)
    value: str = deployed.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"]
    return value


def consumer_token(deployed: Deployed, scope: str | None = None) -> tuple[int, dict[str, Any]]:
    """A client-credentials token for the consumer's app client from the local token endpoint."""
    client_id = next(v for k, v in deployed.outputs().items() if "ClientId" in k and "IrisTeam" in k)
    described = deployed.client("cognito-idp").describe_user_pool_client(
        UserPoolId=POOL_ID, ClientId=client_id
    )
    secret = described["UserPoolClient"]["ClientSecret"]
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    status, _, raw = call(
        f"http://127.0.0.1:{deployed.cloud.gateway.port}/oauth2/token",
        method="POST",
        body=urllib.parse.urlencode(form).encode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
        },
    )
    body: dict[str, Any] = json.loads(raw)
    return status, body


# ------------------------------------------------------------------------------------------ tests


def test_a_caller_allowed_on_one_model_is_served_by_it_and_refused_by_the_other(deployed: Deployed) -> None:
    if deployed.auth == "iam":
        credentials = iam_user_of_the_model_policy(deployed)
        served = predict(deployed.url(ALLOWED), sigv4(credentials, deployed.url(ALLOWED)))
        refused = predict(deployed.url(OTHER), sigv4(credentials, deployed.url(OTHER)))
        expected = (403, "ACCESS_DENIED")
    elif deployed.auth == "api_key":
        key = consumer_key(deployed)
        served = predict(deployed.url(ALLOWED), {"x-api-key": key})
        refused = predict(deployed.url(OTHER), {"x-api-key": key})
        expected = (403, "INVALID_API_KEY")
    else:
        status, token = consumer_token(deployed)
        assert status == 200, token
        served = predict(deployed.url(ALLOWED), {"authorization": f"Bearer {token['access_token']}"})
        refused = predict(deployed.url(OTHER), {"authorization": f"Bearer {token['access_token']}"})
        expected = (401, "UNAUTHORIZED")
    assert served[0] == 200, served
    assert "predictions" in served[2]
    assert (refused[0], refused[1]["x-amzn-errortype"]) == expected, refused
    assert refused[2]["error"]["code"] == "client_error"  # the stack's gateway response shape


def test_the_refusal_says_what_api_gateway_says(deployed: Deployed) -> None:
    """IAM names the caller and the method ARN; an API key outside its plan is plainly Forbidden; a
    token without the model's scope is Unauthorized, and the token endpoint grants no scope the client
    is not allowed (Cognito's invalid_scope)."""
    if deployed.auth == "iam":
        credentials = iam_user_of_the_model_policy(deployed)
        _, _, body = predict(deployed.url(OTHER), sigv4(credentials, deployed.url(OTHER)))
        api_id = deployed.cloud.gateway.api_of(OTHER).id  # type: ignore[union-attr]
        assert body["error"]["message"] == (
            f"User: arn:aws:iam::{ACCOUNT}:user/iris-caller is not authorized to perform: execute-api:Invoke "
            f"on resource: arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{STAGE}/POST/models/{OTHER}/predict"
        )
    elif deployed.auth == "api_key":
        for headers in (
            {"x-api-key": consumer_key(deployed)},
            {"x-api-key": "not-a-key-0123456789abcdefgh"},
            {},
        ):
            status, _, body = predict(deployed.url(OTHER), headers)
            assert (status, body["error"]["message"]) == (403, "Forbidden")
    else:
        status, body = consumer_token(deployed, scope=model_scope(PREFIX, OTHER))
        assert (status, body) == (400, {"error": "invalid_scope"})
        status, token = consumer_token(deployed, scope=model_scope(PREFIX, ALLOWED))
        assert status == 200
        status, _, body = predict(deployed.url(OTHER), {"authorization": token["access_token"]})
        assert (status, body["error"]["message"]) == (401, "Unauthorized")
