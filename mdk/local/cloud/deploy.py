"""Deploy the synthesized stacks onto the local AWS: what ``cdk deploy`` does, against moto.

1. synthesize the CDK app (``app.py``, with ``cdk.json``'s context) into a fresh cloud assembly;
2. publish its file assets to the local bootstrap bucket and keep every asset (image build contexts,
   function code, layers) by hash under ``<work>/assets``, so the runner can start any version later;
3. create or update each stack through moto's CloudFormation with the prepared template
   (:mod:`mdk.local.cloud.template`);
4. create or update what moto's CloudFormation skips, through the service APIs, with the properties
   resolved against the deployed stack: aliases, permissions, alarms, CodeDeploy applications and
   deployment groups, the API stage, gateway responses, autoscaling, resource policies;
5. record which code each function version runs, and hand a changed alias that a CodeDeploy deployment
   group manages to the local CodeDeploy (:mod:`mdk.local.cloud.rollout`) instead of moving it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.functions import FunctionCode, FunctionRunner
from mdk.local.cloud.template import Prepared, prepare

log = logging.getLogger("mdk.local")
REPO = Path(__file__).resolve().parents[3]
_HASH = re.compile(r"([0-9a-f]{64})")


class DeployError(RuntimeError):
    """The app did not synthesize, or the local AWS refused a resource; the message says which."""


@dataclass
class AliasChange:
    """An alias whose version a deploy changes, with the deployment group that shifts it (if any)."""

    function: str
    alias: str
    from_version: str
    to_version: str
    application: str | None = None
    deployment_group: str | None = None
    before_traffic_hook: str | None = None  # the function CodeDeploy runs before shifting traffic


@dataclass
class StackDeployment:
    stack: str
    created: bool
    outputs: dict[str, str]
    functions: dict[str, str]  # logical id -> function name
    alias_changes: list[AliasChange] = field(default_factory=list)
    deployment_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> resolved props
    deployment_configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> resolved props


class Deployer:
    def __init__(
        self,
        *,
        session: Any,
        region: str,
        work: Path,
        runner: FunctionRunner,
        config: Path,
        stage: str,
        repo: Path = REPO,
    ) -> None:
        self.session = session
        self.region = region
        self.work = work
        self.runner = runner
        self.config = config
        self.stage = stage
        self.repo = repo
        self._clients: dict[str, Any] = {}
        self.deploys = 0
        self.images: dict[str, Path] = {}  # image asset hash -> build context, for the serving containers
        self.stack_names: list[str] = []
        self.last_templates: dict[str, dict[str, Any]] = {}  # stack -> the synthesized template last deployed
        #: called with each stack's alias changes that a deployment group manages (the local CodeDeploy)
        self.on_alias_change: Callable[[StackDeployment, AliasChange], None] | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    # ------------------------------------------------------------------------------------- synth

    def synth(self) -> Path:
        self.deploys += 1
        out = self.work / "cdk.out" / str(os.getpid()) / str(self.deploys)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        context = json.loads((self.repo / "cdk.json").read_text()).get("context", {})
        context.update({"config": str(self.config), "stage": self.stage})
        env = {
            **os.environ,
            "CDK_OUTDIR": str(out),
            "CDK_CONTEXT_JSON": json.dumps(context),
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        }
        done = subprocess.run(
            [sys.executable, "app.py"], cwd=self.repo, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DeployError(f"synth failed (exit {done.returncode}):\n{done.stderr.strip()[-4000:]}")
        return out

    # ------------------------------------------------------------------------------------ deploy

    def deploy(self) -> list[StackDeployment]:
        assembly = self.synth()
        manifest = json.loads((assembly / "manifest.json").read_text())
        results = []
        for name, artifact in manifest["artifacts"].items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            template = json.loads((assembly / artifact["properties"]["templateFile"]).read_text())
            self.last_templates[name] = template
            assets = self._publish(assembly, name)
            if name not in self.stack_names:
                self.stack_names.append(name)
            results.append(self._deploy_stack(name, template, assets))
        return results

    def _publish(self, assembly: Path, stack: str) -> dict[str, dict[str, Any]]:
        """Upload file assets to the local bootstrap bucket; keep every asset by hash. Returns them."""
        path = assembly / f"{stack}.assets.json"
        if not path.exists():
            return {}
        document = json.loads(path.read_text())
        s3 = self.client("s3")
        kept: dict[str, dict[str, Any]] = {}
        for digest, asset in document.get("files", {}).items():
            source = assembly / asset["source"]["path"]
            if source.name.endswith(".template.json"):
                continue
            stored = self._keep(digest, source)
            kept[digest] = {"kind": asset["source"].get("packaging", "file"), "path": stored}
            for destination in asset["destinations"].values():
                bucket = self._sub(destination["bucketName"])
                self._ensure_bucket(bucket)
                body = _zip_dir(stored) if kept[digest]["kind"] == "zip" else stored.read_bytes()
                s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)
        for digest, asset in document.get("dockerImages", {}).items():
            stored = self._keep(digest, assembly / asset["source"]["directory"])
            kept[digest] = {
                "kind": "image",
                "path": stored,
                "build_args": asset["source"].get("dockerBuildArgs", {}),
                "dockerfile": asset["source"].get("dockerFile", "Dockerfile"),
            }
            self.images[digest] = stored
        return kept

    def _keep(self, digest: str, source: Path) -> Path:
        stored = self.work / "assets" / digest
        if not stored.exists():
            tmp = stored.with_name(f".tmp-{digest}-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            if source.is_dir():
                shutil.copytree(source, tmp)
            else:
                tmp.mkdir(parents=True)
                shutil.copy2(source, tmp / source.name)
            tmp.rename(stored)
        if source.is_dir():
            return stored
        return stored / source.name

    def _sub(self, text: str) -> str:
        return (
            text.replace("${AWS::AccountId}", moto_adapter.ACCOUNT)
            .replace("${AWS::Region}", self.region)
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::URLSuffix}", "amazonaws.com")
        )

    def _ensure_bucket(self, bucket: str) -> None:
        s3 = self.client("s3")
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            kwargs: dict[str, Any] = {}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            s3.create_bucket(Bucket=bucket, **kwargs)

    def _deploy_stack(
        self, stack: str, template: dict[str, Any], assets: dict[str, dict[str, Any]]
    ) -> StackDeployment:
        prepared = prepare(template, stack, self.region)
        cfn = self.client("cloudformation")
        previous_aliases = self._aliases(prepared)
        body = json.dumps(prepared.template)
        capabilities = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
        try:
            existing = cfn.describe_stacks(StackName=stack)["Stacks"][0]
            created = existing["StackStatus"] in ("DELETE_COMPLETE",)
        except ClientError:
            created = True
        if not created:
            self._configure_functions(stack, prepared)
        try:
            if created:
                cfn.create_stack(StackName=stack, TemplateBody=body, Capabilities=capabilities)
            else:
                cfn.update_stack(StackName=stack, TemplateBody=body, Capabilities=capabilities)
        except ClientError as exc:
            raise DeployError(f"{stack}: the local CloudFormation refused the template: {exc}") from exc
        except Exception as exc:  # moto raises its own errors in-process for resources it cannot create
            raise DeployError(
                f"{stack}: the local CloudFormation failed: {type(exc).__name__}: {exc}"
            ) from exc
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not described["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in described["StackStatus"]:
            raise DeployError(f"{stack}: {described['StackStatus']} {described.get('StackStatusReason', '')}")
        result = StackDeployment(
            stack=stack,
            created=created,
            outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
            functions={
                k: v
                for k, v in prepared.names.items()
                if prepared_type(template, k) == "AWS::Lambda::Function"
            },
        )
        self._record_code(stack, template, prepared, assets)
        self.runner.retire_unpublished()
        self._complete(stack, prepared, result, previous_aliases)
        return result

    def _configure_functions(self, stack: str, prepared: Prepared) -> None:
        """Apply functions' new configuration before moto's update publishes their new versions."""
        lam = self.client("lambda")
        for logical, resource in prepared.template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            props = resource["Properties"]
            try:
                resolved = moto_adapter.resolve(
                    stack,
                    {k: props[k] for k in ("Environment", "MemorySize", "Timeout") if k in props},
                    self.region,
                )
                lam.update_function_configuration(FunctionName=props["FunctionName"], **_int_fields(resolved))
            except Exception as exc:  # noqa: BLE001 - a new function, or a reference to a new resource
                log.debug("configuration of %s left to the stack update: %s", logical, exc)

    # ------------------------------------------------------------------------- function code

    def _record_code(
        self, stack: str, template: dict[str, Any], prepared: Prepared, assets: dict[str, dict[str, Any]]
    ) -> None:
        resources = template["Resources"]
        codes: dict[str, FunctionCode] = {}
        for logical, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            props = resource["Properties"]
            code = props["Code"]
            name = prepared.names[logical]
            if "ImageUri" in code:
                digest = _digest(code["ImageUri"])
                asset = assets[digest]
                codes[logical] = FunctionCode(
                    key=f"image-{digest[:16]}",
                    kind="image",
                    context=asset["path"],
                    build_args=tuple(sorted(asset["build_args"].items())),
                    dockerfile=asset["dockerfile"],
                )
            elif "S3Key" in code:
                digest = _digest(code["S3Key"])
                layers = []
                for layer in props.get("Layers", []):
                    layer_resource = resources[layer["Ref"]]
                    layers.append(assets[_digest(layer_resource["Properties"]["Content"]["S3Key"])]["path"])
                identity = json.dumps([digest, [str(p) for p in layers], props["Handler"]])
                codes[logical] = FunctionCode(
                    key=f"zip-{hashlib.sha256(identity.encode()).hexdigest()[:16]}",
                    kind="zip",
                    context=assets[digest]["path"],
                    handler=props["Handler"],
                    layers=tuple(layers),
                )
            else:
                raise DeployError(f"{stack}: function {logical}: only image and S3 zip code run locally")
            self.runner.code[(name, "$LATEST")] = codes[logical]
        for logical, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Version":
                continue
            function = resource["Properties"]["FunctionName"]["Ref"]
            arn = moto_adapter.resolve(stack, {"Ref": logical}, self.region)
            version = str(arn).rsplit(":", 1)[-1]
            self.runner.code.setdefault((prepared.names[function], version), codes[function])

    # ---------------------------------------------------------- what moto's CloudFormation skips

    def _aliases(self, prepared: Prepared) -> dict[tuple[str, str], str]:
        current = {}
        for resource in prepared.deferred.values():
            if resource["Type"] != "AWS::Lambda::Alias":
                continue
            props = resource["Properties"]
            function = props["FunctionName"]
            if isinstance(function, dict):
                function = prepared.names.get(function.get("Ref", ""), "")
            try:
                alias = self.client("lambda").get_alias(FunctionName=function, Name=props["Name"])
                current[(function, props["Name"])] = alias["FunctionVersion"]
            except ClientError:
                pass
        return current

    def _complete(
        self,
        stack: str,
        prepared: Prepared,
        result: StackDeployment,
        previous_aliases: dict[tuple[str, str], str],
    ) -> None:
        groups: dict[str, tuple[str, str, str | None]] = {}  # alias -> (application, group, pre-traffic hook)
        for resource in prepared.deferred.values():
            if resource["Type"] == "AWS::CodeDeploy::DeploymentGroup":
                props = moto_adapter.resolve(stack, resource["Properties"], self.region)
                result.deployment_groups[props["DeploymentGroupName"]] = props
            if resource["Type"] == "AWS::CodeDeploy::DeploymentConfig":
                props = moto_adapter.resolve(stack, resource["Properties"], self.region)
                result.deployment_configs[props["DeploymentConfigName"]] = props
        for logical, resource in prepared.deferred.items():
            policy = resource.get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate")
            if resource["Type"] == "AWS::Lambda::Alias" and policy:
                app = moto_adapter.resolve(stack, policy["ApplicationName"], self.region)
                group = moto_adapter.resolve(stack, policy["DeploymentGroupName"], self.region)
                hook = policy.get("BeforeAllowTrafficHook")
                hook_name = str(moto_adapter.resolve(stack, hook, self.region)) if hook else None
                groups[logical] = (str(app), str(group), hook_name)
        for logical, resource in prepared.deferred.items():
            kind = resource["Type"]
            handler = COMPLETERS.get(kind)
            if handler is None:
                continue
            try:
                props = moto_adapter.resolve(stack, resource.get("Properties", {}), self.region)
                handler(
                    self,
                    logical,
                    props,
                    prepared=prepared,
                    result=result,
                    previous=previous_aliases,
                    group=groups.get(logical),
                )
            except (ClientError, ParamValidationError, KeyError, ValueError) as exc:
                raise DeployError(f"{stack}: {kind} {logical}: {exc}") from exc
        self._settings_moto_drops(stack, prepared)

    def _settings_moto_drops(self, stack: str, prepared: Prepared) -> None:
        """Properties moto's CloudFormation drops of resources it creates (after the bucket policies)."""
        for logical, resource in prepared.template["Resources"].items():
            kind = resource["Type"]
            if kind not in ("AWS::S3::Bucket", "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Method"):
                continue
            props = moto_adapter.resolve(stack, resource.get("Properties", {}), self.region)
            try:
                if kind == "AWS::ApiGateway::Method":
                    self._method_request(prepared, props)
                    continue
                physical = str(moto_adapter.resolve(stack, {"Ref": logical}, self.region))
                if kind == "AWS::S3::Bucket":
                    self._bucket_settings(physical, props)
                else:
                    self._binary_media_types(physical, props)
            except ClientError as exc:
                raise DeployError(f"{stack}: {kind} {logical}: {exc}") from exc

    def _method_request(self, prepared: Prepared, props: dict[str, Any]) -> None:
        """A method's request validator, models and parameters, which moto's CloudFormation drops: without
        them the local gateway would hand a function a body API Gateway's validator refuses (400
        BAD_REQUEST_BODY). The template names the validator by its physical name; moto gave it an id."""
        wanted = props.get("RequestValidatorId")
        models = props.get("RequestModels")
        parameters = props.get("RequestParameters")
        if not (wanted or models or parameters):
            return
        validator_id = None
        if wanted:
            names = {
                prepared.names[logical]: r["Properties"].get("Name", logical)
                for logical, r in prepared.deferred.items()
                if r["Type"] == "AWS::ApiGateway::RequestValidator"
            }
            existing = self.client("apigateway").get_request_validators(restApiId=props["RestApiId"])
            validator_id = next(
                (v["id"] for v in existing.get("items", []) if v.get("name") == names.get(str(wanted))),
                str(wanted),
            )
        moto_adapter.set_method_request(
            str(props["RestApiId"]),
            str(props["ResourceId"]),
            str(props["HttpMethod"]),
            self.region,
            validator_id=validator_id,
            models={str(k): str(v) for k, v in models.items()} if models else None,
            parameters={str(k): bool(v) for k, v in parameters.items()} if parameters else None,
        )

    def _binary_media_types(self, api_id: str, props: dict[str, Any]) -> None:
        """The API's BinaryMediaTypes, which moto's CloudFormation drops (its RestApi keeps the name,
        description and endpoint configuration only): without them a binary body would reach a Lambda
        proxy integration as text instead of base64 with isBase64Encoded, as API Gateway sends it."""
        apigw = self.client("apigateway")
        wanted = [str(t) for t in props.get("BinaryMediaTypes", [])]
        have = apigw.get_rest_api(restApiId=api_id).get("binaryMediaTypes", [])
        operations = [
            {"op": op, "path": "/binaryMediaTypes/" + t.replace("~", "~0").replace("/", "~1"), "value": t}
            for op, types, other in (("add", wanted, have), ("remove", have, wanted))
            for t in types
            if t not in other
        ]
        if operations:
            apigw.update_rest_api(restApiId=api_id, patchOperations=operations)

    def _bucket_settings(self, bucket: str, props: dict[str, Any]) -> None:
        """What moto's CloudFormation drops of a bucket (it keeps the encryption and tags only)."""
        s3 = self.client("s3")
        if props.get("VersioningConfiguration"):
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
            )
        if props.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    k: bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()
                },
            )
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration"):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        logging_config = props.get("LoggingConfiguration")
        if logging_config and logging_config.get("DestinationBucketName"):
            s3.put_bucket_logging(
                Bucket=bucket,
                BucketLoggingStatus={
                    "LoggingEnabled": {
                        "TargetBucket": logging_config["DestinationBucketName"],
                        "TargetPrefix": logging_config.get("LogFilePrefix", ""),
                    }
                },
            )
        rules: list[dict[str, Any]] = []
        for rule in props.get("LifecycleConfiguration", {}).get("Rules", []):
            converted: dict[str, Any] = {"ID": rule.get("Id", f"rule{len(rules)}"), "Status": rule["Status"]}
            converted["Filter"] = {"Prefix": rule.get("Prefix", "")}
            if "ExpirationInDays" in rule:
                converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
            if "NoncurrentVersionExpiration" in rule:
                converted["NoncurrentVersionExpiration"] = {
                    "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
                }
            if "AbortIncompleteMultipartUpload" in rule:
                converted["AbortIncompleteMultipartUpload"] = {
                    "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
                }
            rules.append(converted)
        if rules:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


# ------------------------------------------------------------------------------------ completers

Completer = Callable[..., None]


def _alias(
    d: Deployer,
    logical: str,
    props: dict[str, Any],
    *,
    result: StackDeployment,
    previous: dict[tuple[str, str], str],
    group: tuple[str, str, str | None] | None,
    **_: Any,
) -> None:
    lam = d.client("lambda")
    function, name, version = props["FunctionName"], props["Name"], str(props["FunctionVersion"])
    before = previous.get((function, name))
    if before is None:
        lam.create_alias(
            FunctionName=function,
            Name=name,
            FunctionVersion=version,
            Description=props.get("Description", ""),
        )
        return
    if before == version:
        return
    change = AliasChange(function, name, before, version, *(group or (None, None, None)))
    if group is not None and d.on_alias_change is not None:
        result.alias_changes.append(change)  # the local CodeDeploy shifts it
        d.on_alias_change(result, change)
    else:
        lam.update_alias(
            FunctionName=function,
            Name=name,
            FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": {}},
        )


def _permission(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    from mdk.local.cloud.functions import split_function

    function, qualifier = split_function(str(props["FunctionName"]))
    kwargs = {
        "FunctionName": function,
        "StatementId": logical[:100],
        "Action": props["Action"],
        "Principal": props["Principal"],
    }
    if qualifier:
        kwargs["Qualifier"] = qualifier
    if "SourceArn" in props:
        kwargs["SourceArn"] = props["SourceArn"]
    try:
        d.client("lambda").add_permission(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ResourceConflictException", "ResourceNotFoundException"):
            raise


def _event_invoke_config(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    kwargs = {
        k: v
        for k, v in props.items()
        if k
        in (
            "FunctionName",
            "Qualifier",
            "MaximumRetryAttempts",
            "MaximumEventAgeInSeconds",
            "DestinationConfig",
        )
    }
    d.client("lambda").put_function_event_invoke_config(**kwargs)


def _alarm(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    allowed = {
        "AlarmName",
        "AlarmDescription",
        "ActionsEnabled",
        "OKActions",
        "AlarmActions",
        "InsufficientDataActions",
        "MetricName",
        "Namespace",
        "Statistic",
        "ExtendedStatistic",
        "Dimensions",
        "Period",
        "Unit",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "EvaluateLowSampleCountPercentile",
        "Metrics",
        "ThresholdMetricId",
    }
    kwargs = {k: v for k, v in props.items() if k in allowed}
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    for dimension in kwargs.get("Dimensions", []):
        dimension["Value"] = str(dimension["Value"])
    for query in kwargs.get("Metrics", []):
        for dimension in query.get("MetricStat", {}).get("Metric", {}).get("Dimensions", []):
            dimension["Value"] = str(dimension["Value"])
    if "Threshold" in kwargs:
        kwargs["Threshold"] = float(kwargs["Threshold"])
    d.client("cloudwatch").put_metric_alarm(**kwargs)


def _application(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    try:
        d.client("codedeploy").create_application(
            applicationName=props["ApplicationName"], computePlatform=props.get("ComputePlatform", "Lambda")
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ApplicationAlreadyExistsException":
            raise


def _deployment_group(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    kwargs: dict[str, Any] = {
        "applicationName": props["ApplicationName"],
        "deploymentGroupName": props["DeploymentGroupName"],
        "serviceRoleArn": props["ServiceRoleArn"],
        "deploymentConfigName": props.get("DeploymentConfigName", "CodeDeployDefault.LambdaAllAtOnce"),
    }
    if "AlarmConfiguration" in props:
        kwargs["alarmConfiguration"] = _lower_keys(props["AlarmConfiguration"])
    if "AutoRollbackConfiguration" in props:
        kwargs["autoRollbackConfiguration"] = _lower_keys(props["AutoRollbackConfiguration"])
    if "DeploymentStyle" in props:
        kwargs["deploymentStyle"] = _lower_keys(props["DeploymentStyle"])
    try:
        d.client("codedeploy").create_deployment_group(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "DeploymentGroupAlreadyExistsException":
            raise


def _stage(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    apigw = d.client("apigateway")
    try:
        apigw.create_stage(
            restApiId=props["RestApiId"], stageName=props["StageName"], deploymentId=props["DeploymentId"]
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConflictException":
            raise
        apigw.update_stage(
            restApiId=props["RestApiId"],
            stageName=props["StageName"],
            patchOperations=[{"op": "replace", "path": "/deploymentId", "value": props["DeploymentId"]}],
        )
    # Method settings (throttling, metrics, logging), as the console's stage editor patches them.
    settings = {
        "throttling/rateLimit": "ThrottlingRateLimit",
        "throttling/burstLimit": "ThrottlingBurstLimit",
        "metrics/enabled": "MetricsEnabled",
        "logging/loglevel": "LoggingLevel",
        "logging/dataTrace": "DataTraceEnabled",
    }
    operations = []
    for setting in props.get("MethodSettings", []):
        resource = setting.get("ResourcePath", "/*")
        method = (
            f"{'*' if resource == '/*' else resource.replace('/', '~1')}/{setting.get('HttpMethod', '*')}"
        )
        for path, key in settings.items():
            if key in setting:
                value = setting[key]
                text = str(value).lower() if isinstance(value, bool) else str(value)
                operations.append({"op": "replace", "path": f"/{method}/{path}", "value": text})
    if operations:
        apigw.update_stage(
            restApiId=props["RestApiId"], stageName=props["StageName"], patchOperations=operations
        )


def _gateway_response(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    kwargs: dict[str, Any] = {"restApiId": props["RestApiId"], "responseType": props["ResponseType"]}
    if "StatusCode" in props:
        kwargs["statusCode"] = str(props["StatusCode"])
    if "ResponseParameters" in props:
        kwargs["responseParameters"] = props["ResponseParameters"]
    if "ResponseTemplates" in props:
        kwargs["responseTemplates"] = props["ResponseTemplates"]
    d.client("apigateway").put_gateway_response(**kwargs)


def _validator(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    apigw = d.client("apigateway")
    existing = apigw.get_request_validators(restApiId=props["RestApiId"]).get("items", [])
    if any(v.get("name") == props.get("Name") for v in existing):
        return
    apigw.create_request_validator(
        restApiId=props["RestApiId"],
        name=props.get("Name", logical),
        validateRequestBody=bool(props.get("ValidateRequestBody")),
        validateRequestParameters=bool(props.get("ValidateRequestParameters")),
    )


def _model(d: Deployer, logical: str, props: dict[str, Any], *, prepared: Prepared, **_: Any) -> None:
    """A request model (JSON Schema draft 4), named as the template's methods refer to it (Ref)."""
    apigw = d.client("apigateway")
    name = str(props.get("Name") or prepared.names[logical])
    schema = props.get("Schema", {})
    text = schema if isinstance(schema, str) else json.dumps(schema)
    with contextlib.suppress(ClientError):  # a redeploy: the new schema
        apigw.delete_model(restApiId=props["RestApiId"], modelName=name)
    apigw.create_model(
        restApiId=props["RestApiId"],
        name=name,
        contentType=str(props.get("ContentType", "application/json")),
        schema=text,
        **({"description": str(props["Description"])} if props.get("Description") else {}),
    )


def _scalable_target(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    d.client("application-autoscaling").register_scalable_target(
        ServiceNamespace=props["ServiceNamespace"],
        ResourceId=props["ResourceId"],
        ScalableDimension=props["ScalableDimension"],
        MinCapacity=int(props["MinCapacity"]),
        MaxCapacity=int(props["MaxCapacity"]),
    )


def _scaling_policy(
    d: Deployer, logical: str, props: dict[str, Any], *, prepared: Prepared, result: StackDeployment, **_: Any
) -> None:
    target = next(
        (
            r["Properties"]
            for r in prepared.deferred.values()
            if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
        ),
        None,
    )
    if target is None:
        return
    target = moto_adapter.resolve(result.stack, target, d.region)
    config = props.get("TargetTrackingScalingPolicyConfiguration")
    kwargs: dict[str, Any] = {
        "PolicyName": props["PolicyName"],
        "ServiceNamespace": target["ServiceNamespace"],
        "ResourceId": target["ResourceId"],
        "ScalableDimension": target["ScalableDimension"],
        "PolicyType": props.get("PolicyType", "TargetTrackingScaling"),
    }
    if config:
        config = dict(config)
        config["TargetValue"] = float(config["TargetValue"])
        kwargs["TargetTrackingScalingPolicyConfiguration"] = config
    d.client("application-autoscaling").put_scaling_policy(**kwargs)


def _bucket_policy(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    d.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))


def _topic_policy(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    for topic in props["Topics"]:
        d.client("sns").set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
        )


def _queue_policy(d: Deployer, logical: str, props: dict[str, Any], **_: Any) -> None:
    for queue in props["Queues"]:
        d.client("sqs").set_queue_attributes(
            QueueUrl=queue, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
        )


COMPLETERS: dict[str, Completer] = {
    "AWS::Lambda::Alias": _alias,
    "AWS::Lambda::Permission": _permission,
    "AWS::Lambda::EventInvokeConfig": _event_invoke_config,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CodeDeploy::Application": _application,
    "AWS::CodeDeploy::DeploymentGroup": _deployment_group,
    "AWS::ApiGateway::Stage": _stage,
    "AWS::ApiGateway::GatewayResponse": _gateway_response,
    "AWS::ApiGateway::RequestValidator": _validator,
    "AWS::ApiGateway::Model": _model,
    "AWS::ApplicationAutoScaling::ScalableTarget": _scalable_target,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _scaling_policy,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::SQS::QueuePolicy": _queue_policy,
}
# Not created locally, and why: AWS::ApiGateway::Account (an account-wide logging role, nothing to
# serve),
# AWS::CodeDeploy::DeploymentConfig (kept in StackDeployment.deployment_configs for the local CodeDeploy),
# AWS::CDK::Metadata.


def prepared_type(template: dict[str, Any], logical: str) -> str | None:
    resource = template["Resources"].get(logical)
    return None if resource is None else str(resource["Type"])


def _int_fields(props: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if k in ("MemorySize", "Timeout") else v for k, v in props.items()}


def _lower_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_lower_keys(v) for v in node]
    return node


def _digest(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    match = _HASH.search(text)
    if match is None:
        raise DeployError(f"no asset hash in {text[:200]}")
    return match.group(1)


def _zip_dir(directory: Path) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()
