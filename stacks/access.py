"""Per-model access, one construct per auth mode (``api.auth``); the stacks wire them (stacks/__init__.py).

- ``iam``: :class:`ModelInvokePolicy`, a managed policy per model granting ``execute-api:Invoke`` on that
  model's routes only, for the operator to attach to the roles and users that may call it.
- ``cognito``: :class:`ModelScopes`, a resource server in the user's pool with one OAuth scope per model
  (each model's methods require its scope), and :class:`ConsumerClients`, an app client per consumer
  (client credentials) allowed its models' scopes.
- ``api_key``: :class:`ConsumerPlans`, an API key and a usage plan per consumer listing its models' API
  stages, each with the consumer's throttle, and its daily quota. A key identifies a consumer and meters
  it; it is not an authorization ("Usage plans and API keys for REST APIs in API Gateway", best
  practices, https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html:
  "Don't rely on API keys as your only means of authentication and authorization for your APIs ...
  Instead, use an IAM role, a Lambda authorizer, or an Amazon Cognito user pool"). A key reaches the
  stages its plan lists and no other, because each model has its own REST API and stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from constructs import Construct

from mdk.config import Consumer
from mdk_runtime import routes
from stacks import nag

MAX_POLICY_NAME = 128  # "IAM and AWS STS quotas": a managed policy's name, at most 128 characters


def model_scope(prefix: str, model: str) -> str:
    """The OAuth scope that calls ``model``: ``<resource server identifier>/<scope name>``, as Cognito
    writes it into access tokens ("ResourceServerScopeType", Amazon Cognito API reference,
    https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_ResourceServerScopeType.html).
    The resource server's identifier is the deployment's prefix (``<project>-<stage>``), the scope's name
    the model's."""
    return f"{prefix}/{model}"


def api_id_export(prefix: str, model: str) -> str:
    """The export by which a model stack shares its REST API's id: ``<prefix>-model-<model>-api-id``."""
    return f"{prefix}-model-{model}-api-id"


def invoke_policy_name(prefix: str, model: str) -> str:
    """``<prefix>-invoke-<model>``; shortened with a hash of the whole name past IAM's 128 characters
    (a prefix of 45 and a model name of 32 never are, but the name must never fail a deploy)."""
    name = f"{prefix}-invoke-{model}"
    if len(name) <= MAX_POLICY_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_POLICY_NAME - 9]}-{digest}"


def _pascal(name: str) -> str:
    return name.title().replace("-", "")


class ModelInvokePolicy(Construct):
    """A customer managed policy granting ``execute-api:Invoke`` on one model's routes of its API stage.

    The resource is ``arn:<partition>:execute-api:<region>:<account>:<api id>/<stage>/*/models/<model>/*``
    (every method of every route below the model's prefix, nothing else; the resource format is
    ``arn:aws:execute-api:region:account-id:api-id/stage-name/HTTP-VERB/resource-path-specifier``: "Control
    access for invoking an API",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-control-access-using-iam-policies-to-invoke-api.html).
    Exposes ``policy`` and ``resource`` (the ARN pattern); its ARN is an output.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rest_api_id: str,
        stage: str,
        model: str,
        prefix: str,
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        region = region or stack.region
        account = account or stack.account
        self.resource = (
            f"arn:{stack.partition}:execute-api:{region}:{account}:{rest_api_id}/{stage}/*"
            f"{routes.model_prefix(model)}/*"
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            managed_policy_name=invoke_policy_name(prefix, model),
            description=f"{prefix}: call model {model} (execute-api:Invoke on its routes only)",
            statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=[self.resource])],
        )
        nag.acknowledge(
            self.policy,
            nag.Acknowledged(
                f"AwsSolutions::AwsSolutions-IAM5[Resource::{_flatten(stack.resolve(self.resource))}]",
                nag.MODEL_INVOKE_ROUTES_REASON,
            ),
        )
        cdk.CfnOutput(
            self,
            "Arn",
            value=self.policy.managed_policy_arn,
            description=f"attach to the roles and users that may call model {model}",
        )


def _flatten(value: object) -> str:
    """A resolved value as cdk-nag writes it in a finding's id: a reference as ``<LogicalId>``, a pseudo
    parameter as ``<AWS::Partition>``, an attribute as ``<LogicalId.Attribute>``, an import as the name of
    its export."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(_flatten(p) for p in parts)
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::ImportValue" in value:
            return _flatten(value["Fn::ImportValue"])  # an import as its export's name
    return str(value)


class ModelScopes(Construct):
    """An OAuth resource server in the user's pool: identifier ``<prefix>``, one scope per model.

    Cognito allows 100 custom scopes per resource server (``CreateResourceServer``: "Scopes ... Maximum
    number of 100 items",
    https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateResourceServer.html);
    the config refuses more models with Cognito. A method requiring a scope takes an access token that
    carries it (an ID token is refused: "Integrate a REST API with an Amazon Cognito user pool",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-enable-cognito-user-pool.html).
    Exposes ``pool``, ``resource_server`` and ``scopes`` (model name to its scope).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, user_pool_arn: str, prefix: str, models: Sequence[str]
    ) -> None:
        super().__init__(scope, construct_id)
        self.prefix = prefix
        self.pool = cognito.UserPool.from_user_pool_arn(self, "UserPool", user_pool_arn)
        self.resource_server = cognito.CfnUserPoolResourceServer(
            self,
            "ResourceServer",
            identifier=prefix,
            name=prefix,
            user_pool_id=self.pool.user_pool_id,
            scopes=[
                cognito.CfnUserPoolResourceServer.ResourceServerScopeTypeProperty(
                    scope_name=model, scope_description=f"call model {model}"
                )
                for model in models
            ],
        )
        self.scopes = {model: model_scope(prefix, model) for model in models}


class ConsumerClients(Construct):
    """An app client per consumer in the resource server's pool: the client credentials grant only, a
    generated secret, and its models' scopes (at most 50 per client, ``CreateUserPoolClient``:
    AllowedOAuthScopes,
    https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateUserPoolClient.html).

    The client credentials grant needs a domain on the pool (the token endpoint,
    ``https://<domain>/oauth2/token``): the pool is the user's, and so is its domain. Exposes ``clients``
    (consumer name to its client); each client's id is an output (its secret: ``aws cognito-idp
    describe-user-pool-client --user-pool-id <pool> --client-id <id> --query UserPoolClient.ClientSecret``).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, scopes: ModelScopes, consumers: Sequence[Consumer]
    ) -> None:
        super().__init__(scope, construct_id)
        self.clients: dict[str, cognito.CfnUserPoolClient] = {}
        for consumer in consumers:
            unknown = [m for m in consumer.models if m not in scopes.scopes]
            if unknown:
                raise ValueError(f"consumer {consumer.name!r}: no scope for model {unknown[0]!r}")
            client = cognito.CfnUserPoolClient(
                self,
                f"Client{_pascal(consumer.name)}",
                user_pool_id=scopes.pool.user_pool_id,
                client_name=f"{scopes.prefix}-{consumer.name}",
                generate_secret=True,
                allowed_o_auth_flows=["client_credentials"],
                allowed_o_auth_flows_user_pool_client=True,
                allowed_o_auth_scopes=[scopes.scopes[m] for m in consumer.models],
                explicit_auth_flows=["ALLOW_REFRESH_TOKEN_AUTH"],  # no user sign-in through this client
                supported_identity_providers=["COGNITO"],
                prevent_user_existence_errors="ENABLED",
            )
            client.node.add_dependency(scopes.resource_server)  # its scopes must exist first
            self.clients[consumer.name] = client
            cdk.CfnOutput(
                self,
                f"ClientId{_pascal(consumer.name)}",
                value=client.ref,
                description=f"consumer {consumer.name}: app client id (client credentials; models "
                f"{', '.join(consumer.models)})",
            )


@dataclass(frozen=True)
class ModelStage:
    """One model's API stage as a usage plan names it, and its routes (``(path, method)``, as
    :func:`mdk_runtime.routes.api_routes` lists them) for the per-method throttle."""

    rest_api_id: str
    stage_name: str
    routes: tuple[tuple[str, str], ...]


class ConsumerPlans(Construct):
    """Per consumer: an API key (enabled, its value generated by API Gateway), a usage plan listing the
    API stages of its models, and the key's membership of the plan.

    Each stage carries the consumer's rate and burst on every route of the model: a usage plan's
    per-method throttle ("Per-client per-method throttling limits", the first API Gateway applies: "Throttle
    requests to your REST APIs for better throughput in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html) is a
    bucket per key and method, so one consumer's burst on one model draws on neither its other models nor
    another consumer. A plan-level throttle would be one bucket per key "aggregated across all API stages
    within a usage plan" (the usage plans page), so it is left unset. The quota is per plan and day.

    Quotas this sits within ("Amazon API Gateway quotas",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html, and "Quotas for configuring
    and running a REST API in API Gateway"): 300 usage plans per account and Region (the config refuses
    more consumers), 10,000 API keys per account and Region, 10 usage plans per API key (one here).
    Exposes ``keys`` and ``plans`` (consumer name to each); each key's id is an output.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        consumers: Sequence[Consumer],
        stages: Mapping[str, ModelStage],
        prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.keys: dict[str, apigw.CfnApiKey] = {}
        self.plans: dict[str, apigw.CfnUsagePlan] = {}
        for consumer in consumers:
            unknown = [m for m in consumer.models if m not in stages]
            if unknown:
                raise ValueError(f"consumer {consumer.name!r}: no API stage for model {unknown[0]!r}")
            suffix = _pascal(consumer.name)
            key = apigw.CfnApiKey(
                self,
                f"ApiKey{suffix}",
                name=f"{prefix}-{consumer.name}",
                description=f"{prefix}: consumer {consumer.name} (models {', '.join(consumer.models)})",
                enabled=True,
            )
            throttle = apigw.CfnUsagePlan.ThrottleSettingsProperty(
                rate_limit=consumer.rate, burst_limit=consumer.burst
            )
            plan = apigw.CfnUsagePlan(
                self,
                f"UsagePlan{suffix}",
                usage_plan_name=f"{prefix}-{consumer.name}",
                description=f"{prefix}: what consumer {consumer.name} may call, how fast and how much",
                api_stages=[
                    apigw.CfnUsagePlan.ApiStageProperty(
                        api_id=stages[model].rest_api_id,
                        stage=stages[model].stage_name,
                        throttle={f"{path}/{method}": throttle for path, method in stages[model].routes},
                    )
                    for model in consumer.models
                ],
                quota=None
                if consumer.quota_per_day is None
                else apigw.CfnUsagePlan.QuotaSettingsProperty(limit=consumer.quota_per_day, period="DAY"),
            )
            apigw.CfnUsagePlanKey(
                self, f"UsagePlanKey{suffix}", key_id=key.ref, key_type="API_KEY", usage_plan_id=plan.ref
            )
            self.keys[consumer.name] = key
            self.plans[consumer.name] = plan
            cdk.CfnOutput(
                self,
                f"ApiKeyId{suffix}",
                value=key.ref,
                description=f"consumer {consumer.name}: its key's value is "
                "aws apigateway get-api-key --api-key <id> --include-value",
            )
