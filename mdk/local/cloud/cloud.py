"""All of the local cloud together: one object to start, deploy to, and stop."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.deploy import REPO, Deployer
from mdk.local.cloud.registry import AliasChange, StackDeployment
from mdk.local.cloud.services.apigateway import Gateway
from mdk.local.cloud.services.cloudwatch import AlarmEvaluator, Metrics
from mdk.local.cloud.services.codedeploy import Deployment, LocalCodeDeploy
from mdk.local.cloud.services.lambda_ import FunctionRunner, split_function
from mdk.local.cloud.services.sagemaker import Containers, Endpoints, TransformJobs
from mdk.local.cloud.services.scheduler import LocalScheduler
from mdk.local.rie import ensure_rie
from mdk.registry import Deployed

log = logging.getLogger("mdk.local")
#: The local AWS's credentials: the printed examples and the gateway's SigV4 check use them.
ACCESS_KEY, SECRET_KEY = "test", "test"


class _Session:
    """boto3 clients for the local AWS (its endpoint, its credentials), made once per service."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, **_: Any) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32),
                )
            return self._clients[service]


@dataclass
class Ready:
    """What a user needs once the cloud is up."""

    api_url: str
    aws_endpoint: str
    bucket: str | None
    models: dict[str, Deployed]
    stacks: list[StackDeployment]


class LocalCloud:
    def __init__(
        self,
        *,
        config: Path,
        stage: str = "dev",
        region: str = "us-east-1",
        aws_port: int = 0,
        api_port: int = 0,
        work: Path | None = None,
        minute_s: float = 2.0,
        repo: Path = REPO,
    ) -> None:
        self.config = config.resolve()
        self.stage = stage
        self.region = region
        self.repo = repo
        self.work = (work or repo / "build" / "local").resolve()
        self.minute_s = minute_s
        self.aws = moto_adapter.LocalAws(aws_port, region)
        self.session = _Session(self.aws.endpoint_url, region)
        self.metrics = Metrics(self.session.client("cloudwatch"))
        self.runner = FunctionRunner(
            work=self.work,
            rie=ensure_rie(repo / ".cache"),
            lambda_client=self.session.client("lambda"),
            metrics=self.metrics,
            endpoint_url=self.aws.endpoint_url,
            region=region,
            layer_cache=repo / ".cache" / "local-layers",
        )
        self.deployer = Deployer(
            session=self.session,
            region=region,
            work=self.work,
            runner=self.runner,
            config=self.config,
            stage=stage,
            repo=repo,
        )
        self.containers = Containers(
            work=self.work,
            s3=self.session.client("s3"),
            sagemaker=self.session.client("sagemaker"),
            images=self.deployer.images,
        )
        self.endpoints = Endpoints(self.containers, self.session.client("sagemaker"))
        self.transforms = TransformJobs(
            containers=self.containers,
            s3=self.session.client("s3"),
            events=self.session.client("events"),
            region=region,
            work=self.work,
        )
        self.alarms = AlarmEvaluator(
            cloudwatch=self.session.client("cloudwatch"),
            sns=self.session.client("sns"),
            sqs=self.session.client("sqs"),
            region=region,
            minute_s=minute_s,
        )
        self.codedeploy = LocalCodeDeploy(
            session=self.session, region=region, runner=self.runner, alarms=self.alarms, minute_s=minute_s
        )
        self.gateway = Gateway(
            apigateway=self.session.client("apigateway"),
            runner=self.runner,
            endpoints=self.endpoints,
            region=region,
            credentials=(ACCESS_KEY, SECRET_KEY),
            port=api_port,
        )
        self.scheduler = LocalScheduler(
            self.session.client("scheduler"), fire=self._event_target, minute_s=minute_s
        )
        self.rollouts: list[Deployment] = []
        self.deployer.on_alias_change = self._alias_changed
        self._deploy_lock = threading.Lock()
        self.ready: Ready | None = None

    @property
    def aws_endpoint(self) -> str:
        return self.aws.endpoint_url

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.aws.start()
        hooks = moto_adapter.HOOKS
        if hooks.active:
            raise RuntimeError("a local cloud is already running in this process")
        hooks.active = True
        hooks.invoker = self.runner.invoke_for_moto
        hooks.event_target = self._event_target
        hooks.transform = self.transforms.run
        self.gateway.start()
        self.alarms.start(every_s=max(1.0, self.minute_s))

    def _event_target(self, arn: str, event: dict[str, Any]) -> None:
        """EventBridge invokes asynchronously: Lambda retries a failed invocation as the function's event
        invoke config says (default 2 retries, after 1 and 2 minutes: simulated minutes here), then sends
        the event with the error to the on-failure destination (the dead-letter queue). Never dropped."""
        payload = json.dumps(event).encode()
        name, _qualifier = split_function(arn)
        config = moto_adapter.event_invoke_config(name, self.region)
        retries = int(config.get("MaximumRetryAttempts", 2))
        error: bytes = b""
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(attempt * self.minute_s)
            try:
                result = self.runner.invoke(arn, None, payload)
            except Exception as exc:
                log.exception("EventBridge -> %s failed (attempt %d)", arn, attempt + 1)
                error = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
                continue
            if not result.errored:
                return
            error = result.payload
            log.warning(
                "EventBridge -> %s: the function failed (attempt %d of %d): %s",
                arn,
                attempt + 1,
                retries + 1,
                result.payload[:300],
            )
        self._on_failure(arn, config, event, error, retries + 1)

    def _on_failure(
        self, arn: str, config: dict[str, Any], event: dict[str, Any], error: bytes, attempts: int
    ) -> None:
        """Lambda's on-failure destination record (an SQS queue here), as AWS writes it."""
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", "")
        if not destination.startswith("arn:aws:sqs:"):
            log.error(
                "EventBridge -> %s: failed %d times and has no on-failure queue: event dropped", arn, attempts
            )
            return
        try:
            response: Any = json.loads(error)
        except ValueError:
            response = error.decode("utf-8", "replace")
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": arn,
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": response,
        }
        sqs = self.session.client("sqs")
        queue = destination.rsplit(":", 1)[-1]
        deadline = time.monotonic() + 300  # Lambda's own service keeps trying while SQS is unreachable
        while True:
            try:
                url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
                sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
                break
            except Exception as exc:  # noqa: BLE001 - unreachable or refused: try again
                if time.monotonic() > deadline:
                    log.error("EventBridge -> %s: could not reach %s: %s; event dropped", arn, queue, exc)
                    return
                time.sleep(1.0)
        log.warning("EventBridge -> %s: failed %d times; the event is in %s", arn, attempts, queue)

    def _alias_changed(self, stack: StackDeployment, change: AliasChange) -> None:
        self.rollouts.append(self.codedeploy.start(stack, change))

    def deploy(self) -> Ready:
        with self._deploy_lock:
            started = time.perf_counter()
            stacks = self.deployer.deploy()
            self.gateway.load_all(self._apis())
            self.scheduler.sync()
            models = self._point_registry_here()
            bucket = next((m.batch_bucket for m in models.values() if m.batch_bucket), None)
            self.ready = Ready(self.gateway.url, self.aws_endpoint, bucket, models, stacks)
            log.info(
                "deployed %s in %.1f s", ", ".join(s.stack for s in stacks), time.perf_counter() - started
            )
            return self.ready

    def _apis(self) -> list[tuple[str, str]]:
        """Every REST API the deployed stacks hold (one per model stack), with its stage."""
        apigw = self.session.client("apigateway")
        cfn = self.session.client("cloudformation")
        found = []
        for stack in self.deployer.stack_names:
            pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
            for page in pages:
                for resource in page["StackResourceSummaries"]:
                    if resource["ResourceType"] == "AWS::ApiGateway::RestApi":
                        api_id = resource["PhysicalResourceId"]
                        stages = apigw.get_stages(restApiId=api_id).get("item", [])
                        found.append((api_id, stages[0]["stageName"] if stages else self.stage))
        if not found:
            raise RuntimeError("the deployed stacks have no REST API")
        return found

    def _point_registry_here(self) -> dict[str, Deployed]:
        """The registry's api_url is the deployed API's AWS URL; locally the API is the gateway's."""
        ssm = self.session.client("ssm")
        project = self._project()
        path = f"/mdk/{project}/{self.stage}/models/"
        models: dict[str, Deployed] = {}
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path):
            for parameter in page["Parameters"]:
                value = json.loads(parameter["Value"])
                value["api_url"] = self.gateway.url
                ssm.put_parameter(
                    Name=parameter["Name"], Value=json.dumps(value), Type="String", Overwrite=True
                )
                models[value["model"]] = Deployed.from_json(value)
        return models

    def _project(self) -> str:
        from mdk.config import load_config

        return load_config(self.config).project

    def warm(self, models: Iterable[str] | None = None) -> list[str]:
        """Start the sandboxes of ``models`` (the versions their alias serves now) and their endpoints'
        serving containers (every production variant with weight), so their first request does not pay
        the start; ``None`` warms every deployed model and stages the other functions too.

        Nothing else starts before it is used: a deploy starts no sandbox and no container, and a model's
        first request (through the gateway, or a direct Invoke / InvokeEndpoint) starts what serves it, so
        memory grows with the models in use, not the models listed. Returns the models warmed, in the
        config's order, and logs them with the ones left to start on first use. Unknown names: ValueError."""
        deployed = dict(self.ready.models) if self.ready else {}
        listed = self._model_names()
        order = [m for m in listed if m in deployed] + sorted(set(deployed) - set(listed))
        wanted = order if models is None else list(dict.fromkeys(models))
        unknown = [name for name in wanted if name not in deployed]
        if unknown:
            raise ValueError(f"no model {unknown[0]!r} is deployed (deployed: {', '.join(order) or 'none'})")
        warmed = []
        for name in (m for m in order if m in wanted):
            try:
                self._start_model(deployed[name])
            except Exception as exc:  # noqa: BLE001 - warming is best effort; the first request reports
                log.warning("could not warm %s: %s", name, exc)
            else:
                warmed.append(name)
        if models is None:
            for (_function, version), code in list(self.runner.code.items()):
                if version == "$LATEST" and code.kind == "zip":
                    self.runner.stage(code)
        lazy = ", ".join(name for name in order if name not in warmed)
        started = f"started {', '.join(warmed)}" if warmed else ""
        log.info("; ".join(part for part in (started, f"{lazy} start on first use" if lazy else "") if part))
        return warmed

    def _start_model(self, model: Deployed) -> None:
        """What serves ``model`` now: its alias's versions, or its endpoint's weighted variants."""
        if model.lambda_ is not None:
            lam = self.session.client("lambda")
            alias = lam.get_alias(FunctionName=model.lambda_.function_name, Name=model.lambda_.alias)
            weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
            versions = [alias["FunctionVersion"], *weights]
            for version in versions:
                self.runner.process(model.lambda_.function_name, str(version))
        if model.sagemaker is not None:
            weights, variants = self.endpoints.variants(model.sagemaker.endpoint_name)
            for variant, weight in weights:
                if weight > 0:
                    self.containers.url(variants[variant])

    def _model_names(self) -> list[str]:
        """The config's models, in its order."""
        from mdk.config import load_config

        return [model.name for model in load_config(self.config).models]

    def rollouts_running(self) -> bool:
        return any(not rollout.done.is_set() for rollout in self.rollouts)

    def wait_rollouts(self, timeout: float = 300) -> list[Deployment]:
        deadline = time.monotonic() + timeout
        for rollout in self.rollouts:
            rollout.done.wait(max(0.0, deadline - time.monotonic()))
        return self.rollouts

    def stop(self) -> None:
        for step in (
            self.scheduler.stop,
            self.alarms.stop,
            self.gateway.stop,
            self.runner.stop,
            self.containers.stop,
            self.metrics.close,
            self.aws.stop,
        ):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - stop everything we can
                log.warning("stopping %s: %s", getattr(step, "__qualname__", step), exc)
        hooks = moto_adapter.HOOKS
        hooks.invoker = hooks.event_target = hooks.transform = None
        hooks.active = False

    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
