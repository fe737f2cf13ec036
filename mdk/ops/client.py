"""Using a deployed model: ``mdk predict`` (the HTTPS API, authenticated as the API requires) and
``mdk batch submit`` / ``status`` (the batch inbox and the runs' manifests)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from mdk.ops.context import Ops, OpsError, aws_errors
from mdk.registry import Deployed
from mdk_runtime import batch
from mdk_runtime.manifest import Manifest, decode

NPY = "application/x-npy"


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


def predict(
    ops: Ops,
    model: str,
    body: bytes,
    *,
    content_type: str,
    api_key: str | None = None,
    token: str | None = None,
) -> Answer:
    """``POST <api>/models/<model>/predict``: SigV4-signed (iam), or with the API key or ID token."""
    deployed = ops.deployed(model)
    url = deployed.api_url.rstrip("/") + f"/models/{model}/predict"
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if deployed.api_auth == "api_key":
        if not api_key:
            raise OpsError("this API takes API keys: pass --api-key (or set MDK_API_KEY)")
        headers["x-api-key"] = api_key
    elif deployed.api_auth == "cognito":
        if not token:
            raise OpsError("this API takes Cognito ID tokens: pass --token (or set MDK_ID_TOKEN)")
        headers["Authorization"] = token
    else:
        headers = _signed(url, body, headers)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the API's https URL
            return Answer(response.status, response.read(), response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), exc.headers.get("Content-Type", ""))
    except urllib.error.URLError as exc:
        raise OpsError(f"cannot reach the API at {url}: {exc.reason}") from None


def _signed(url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """SigV4 for API Gateway (service ``execute-api``) with boto3's usual credentials and region."""
    import boto3

    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise OpsError(
            "no AWS credentials to sign the request: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        )
    if not session.region_name:
        raise OpsError("no AWS region to sign the request for: set AWS_REGION")
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", session.region_name).add_auth(request)
    return dict(request.headers.items())


def content_type_for(path: str | None) -> str:
    return NPY if path is not None and path.endswith(".npy") else "application/json"


# -- batch ------------------------------------------------------------------------------------------------


def _bucket(deployed: Deployed) -> str:
    if not deployed.batch_bucket:
        raise OpsError(f"model {deployed.model} takes no batch files (batch.enabled is false in its config)")
    return deployed.batch_bucket


def submit(ops: Ops, model: str, path: Path, *, name: str | None = None) -> dict[str, Any]:
    """Upload ``path`` to the model's inbox; returns bucket, key, version and the upload time."""
    deployed = ops.deployed(model)
    bucket = _bucket(deployed)
    if not path.is_file():
        raise OpsError(f"FILE: not found: {path}")
    key = f"{batch.INCOMING}{model}/{name or path.name}"
    try:
        batch.input_format(key)
    except batch.BatchInputError as exc:
        raise OpsError(f"FILE: {exc.message}") from None
    started = datetime.now().astimezone()
    with path.open("rb") as fh:
        response = ops.call("s3", "put_object", Bucket=bucket, Key=key, Body=fh)
    return {"bucket": bucket, "key": key, "version_id": response.get("VersionId"), "uploaded": started}


@dataclass(frozen=True)
class Run:
    """A run's manifest, and where it lies (``s3://<bucket>/results/<model>/<run>/_status.json``)."""

    manifest: Manifest
    uri: str

    def to_json(self) -> dict[str, Any]:
        """The manifest as written, and its ``manifest_uri`` (``mdk batch status --json``)."""
        return {**self.manifest.to_json(), "manifest_uri": self.uri}


def find_run(ops: Ops, model: str, upload: dict[str, Any]) -> Run | None:
    """The manifest of the run an upload started, once the trigger has written it."""
    since = upload["uploaded"] - timedelta(seconds=5)
    for found in _manifests(ops, upload["bucket"], model, since=since):
        source = found.manifest.input
        if source.get("key") != upload["key"]:
            continue
        if upload.get("version_id") and source.get("version_id") not in (None, upload["version_id"]):
            continue
        return found
    return None


def wait(
    ops: Ops,
    model: str,
    upload: dict[str, Any],
    *,
    timeout_s: float,
    every_s: float = 2.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Run:
    """Poll until the run's manifest reaches a final state, store load included (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = find_run(ops, model, upload)
        state = found.manifest.state if found else "waiting for the trigger"
        progress(state if found is None else f"{state}: {found.manifest.message}")
        if found is not None and found.manifest.settled:
            return found
        if time.monotonic() > deadline:
            raise OpsError(
                f"no final state after {timeout_s:g} s (last: {state}); check later with "
                f"`mdk batch status --model {model}`"
            )
        time.sleep(every_s)


def _manifests(ops: Ops, bucket: str, model: str, *, since: datetime | None = None) -> list[Run]:
    """The model's run manifests, newest first."""
    paginator = ops.client("s3").get_paginator("list_objects_v2")
    with aws_errors("listing the model's runs"):
        objects = [
            obj
            for page in paginator.paginate(Bucket=bucket, Prefix=f"{batch.RESULTS}{model}/")
            for obj in page.get("Contents", [])
            if obj["Key"].endswith("/" + batch.MANIFEST) and (since is None or obj["LastModified"] >= since)
        ]
    objects.sort(key=lambda o: o["LastModified"], reverse=True)
    return [
        Run(
            decode(ops.call("s3", "get_object", Bucket=bucket, Key=obj["Key"])["Body"].read()),
            f"s3://{bucket}/{obj['Key']}",
        )
        for obj in objects
    ]


def runs(ops: Ops, model: str, *, limit: int = 20) -> list[Run]:
    deployed = ops.deployed(model)
    return _manifests(ops, _bucket(deployed), model)[:limit]


def run(ops: Ops, model: str, run_id: str) -> Run:
    deployed = ops.deployed(model)
    bucket = _bucket(deployed)
    key = batch.manifest_key(model, run_id)
    try:
        body = ops.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        if code in ("NoSuchKey", "404"):
            raise OpsError(
                f"no run {run_id!r} of model {model} (see `mdk batch status --model {model}`)"
            ) from None
        with aws_errors(f"reading {key}"):
            raise
    return Run(decode(body), f"s3://{bucket}/{key}")
