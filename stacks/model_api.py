"""A model's REST API: authenticated, throttled, logged, traced, optionally WAF'd.

Each model has its own REST API in its own stack (stacks/model_stack.py): a usage plan grants access per
API stage, so a consumer's key reaches only the models its plan lists, and API Gateway's per-API quotas
(300 resources, 10 authorizers: "Quotas for configuring and running a REST API in API Gateway",
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html)
never bound how many models a deployment has. The WAF web ACL is one, shared (stacks/shared.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from mdk.config import ApiSettings, ModelConfig, ProcessingSettings
from mdk_runtime import routes
from mdk_runtime.processing import IMAGE_TYPES, MULTIPART, TEXT
from stacks import nag
from stacks.access import ModelInvokePolicy, api_id_export, model_scope
from stacks.settings import DeploySettings

NPY = "application/x-npy"
JSON = "application/json"
# What API Gateway checks before a request reaches a function: the body is one of the three request
# forms, an object with instances or inputs, or a bare list of instances (what the SageMaker Python SDK's
# default JSON serializer sends for predict(X)). In draft 4, the object keywords constrain objects only and
# minItems arrays only. The function validates the tensors themselves (and answers every other case with
# a 4xx).
PREDICT_BODY_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="PredictRequest",
    type=[apigw.JsonSchemaType.OBJECT, apigw.JsonSchemaType.ARRAY],
    min_items=1,
    properties={
        "instances": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1),
        "inputs": apigw.JsonSchema(type=[apigw.JsonSchemaType.OBJECT, apigw.JsonSchemaType.ARRAY]),
    },
    min_properties=1,
    max_properties=1,
    additional_properties=False,
)
# A model with processing takes instances for its processing, not tensors ("Processing reference" in the
# README; mdk_runtime.processing): {"instances": [item, ...]} or a bare list, where an image model's item is
# a base64 string or {"b64": "<base64>"} and a text model's a string (or {"b64": ...} bytes). A handler's
# preprocess takes any JSON value as an item. Raw bodies (image/png, text/plain, a handler's types) are not
# validated: API Gateway validates "the applicable request payload" against the model "for a given content
# type. If no matching content type is found, request validation is not performed" ("Request validation
# for REST APIs in API Gateway",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-method-request-validation.html).
_PROCESSED_ITEM = apigw.JsonSchema(
    type=[apigw.JsonSchemaType.STRING, apigw.JsonSchemaType.OBJECT],
    properties={"b64": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING)},
    required=["b64"],
    additional_properties=False,
)


def _instances_schema(title: str, item: apigw.JsonSchema | None) -> apigw.JsonSchema:
    return apigw.JsonSchema(
        schema=apigw.JsonSchemaVersion.DRAFT4,
        title=title,
        type=[apigw.JsonSchemaType.OBJECT, apigw.JsonSchemaType.ARRAY],
        min_items=1,
        items=item,
        properties={"instances": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1, items=item)},
        required=["instances"],
        additional_properties=False,
    )


PROCESSED_BODY_SCHEMA = _instances_schema("ProcessedPredictRequest", _PROCESSED_ITEM)
HANDLER_BODY_SCHEMA = _instances_schema("HandlerPredictRequest", None)


def request_kind(processing: ProcessingSettings | None) -> str:
    """Which request model a model's predict method gets: ``tensors``, ``processed`` or ``handler``."""
    if processing is None:
        return "tensors"
    if processing.handler is not None:
        return "handler"
    if processing.image is not None or processing.text is not None:
        return "processed"
    return "tensors"  # outputs only: requests are tensors, as for any model


def raw_media_types(processing: ProcessingSettings | None) -> list[str]:
    """The raw (non-JSON) request bodies a model's processing takes, as mdk_runtime.processing reads them."""
    if processing is None:
        return []
    types: list[str] = []
    if processing.image is not None:
        types += [*IMAGE_TYPES, MULTIPART]
    if processing.text is not None:
        types.append(TEXT)
    return types + list(processing.content_types)


def binary_media_types(models: Sequence[ModelConfig]) -> list[str]:
    """The API's binaryMediaTypes: .npy and every raw body type a model takes, in order, once each.

    A binary media type's body reaches a Lambda proxy integration base64-encoded (isBase64Encoded) and an
    AWS integration (SageMaker) as the bytes sent; any other body is handed on as UTF-8 text, which breaks
    an image or a multipart upload. The wildcard ``*/*`` would cover every type ("Binary media types for REST
    APIs in API Gateway", https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings.html:
    "You can use the wildcard character (*) to cover multiple media types"), JSON included, so every JSON
    body would reach the functions base64-encoded too: the list names what the config needs instead. A
    type covering application/json (a handler's ``application/*``) is refused for the same reason.
    """
    types = [NPY]
    for i, model in enumerate(models):
        for kind in raw_media_types(model.processing):
            if kind in (JSON, "application/*", "*/*"):
                raise ValueError(
                    f"models[{i}].processing.content_types: {kind!r} covers application/json, which the API "
                    "must keep as text (JSON bodies are validated and read as text): name the raw types"
                )
            if kind not in types:
                types.append(kind)
    return types


# The common rule set blocks bodies over 8 KB (SizeRestrictions_BODY): real prediction requests are
# larger. That rule only counts here; the body limit is the function's (6 MB, 413 with a pointer to batch).
COMMON_RULES_COUNTED = ("SizeRestrictions_BODY",)


class ModelApi(Construct):
    """A regional REST API with one model's routes of the route table (:mod:`mdk_runtime.routes`).

    Exposes ``api``, ``stage``, ``access_logs`` and ``invoke_policies`` (model name to its
    :class:`~stacks.access.ModelInvokePolicy`, ``iam`` auth). ``web_acl_arn``: the shared web ACL
    (``api.waf``), associated with this API's stage. The account's API Gateway logging role is the shared
    stack's (one per account and region: ``AWS::ApiGateway::Account``).

    Access per model (stacks/access.py): the stage's throttle is the model's own (``models[].throttle``, or
    the API's), all callers together; with ``iam`` a managed policy per model grants invoking its routes;
    with ``cognito`` each method requires the model's OAuth scope; with ``api_key`` each method requires a
    key, and the consumers' keys and usage plans live in the ``<prefix>-access`` stack, which finds this
    API by the export ``<prefix>-model-<name>-api-id``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ApiSettings,
        settings: DeploySettings,
        models: Sequence[ModelConfig] = (),
        web_acl_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.prefix = settings.prefix
        throttle = config.stage_throttle(models[0] if len(models) == 1 else None)
        self.binary_media_types = binary_media_types(models)
        self.processed = any(request_kind(m.processing) != "tensors" for m in models)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=logs.RetentionDays.ONE_YEAR, removal_policy=settings.removal_policy
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            description=f"{settings.prefix}: predictions from the models in the config",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=self.binary_media_types,
            cloud_watch_role=False,  # the account's logging role is the shared stack's
            deploy_options=apigw.StageOptions(
                stage_name=settings.stage,
                throttling_rate_limit=throttle.rate,
                throttling_burst_limit=throttle.burst,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # never log request or response bodies
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        self.stage = self.api.deployment_stage
        # Execution logs (logging_level above) go to API-Gateway-Execution-Logs_<api id>/<stage>, a group
        # API Gateway creates without retention on its first write ("Set up CloudWatch logging for REST
        # APIs in API Gateway", https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html):
        # the stack creates it, with the access logs' retention, before the stage exists.
        self.execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{settings.stage}",
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=settings.removal_policy,
        )
        self.stage.node.add_dependency(self.execution_logs)
        if config.auth != "cognito":
            nag.acknowledge(self.api, nag.NOT_COGNITO)
        if config.auth == "api_key":
            nag.acknowledge(self.api, nag.API_KEY_AUTH)
        if not config.waf:
            nag.acknowledge(self.stage, nag.NO_WAF)
        self.validator = apigw.RequestValidator(
            self,
            "BodyValidator",
            rest_api=self.api,
            validate_request_body=True,
            validate_request_parameters=True,
        )
        self.predict_model = self.api.add_model(
            "PredictRequest", content_type="application/json", schema=PREDICT_BODY_SCHEMA
        )
        self._request_models: dict[str, apigw.Model] = {"tensors": self.predict_model}
        self.authorizer: apigw.IAuthorizer | None = None
        if config.auth == "cognito":
            assert config.cognito_user_pool_arn is not None
            pool = cognito.UserPool.from_user_pool_arn(self, "UserPool", config.cognito_user_pool_arn)
            self.authorizer = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[pool])
        self.invoke_policies: dict[str, ModelInvokePolicy] = {}
        for model in models:
            if config.auth == "iam":
                self.invoke_policies[model.name] = ModelInvokePolicy(
                    self,
                    f"Invoke{model.name.title().replace('-', '')}",
                    rest_api_id=self.api.rest_api_id,
                    stage=settings.stage,
                    model=model.name,
                    prefix=settings.prefix,
                )
            # Always exported, whatever the auth: the access stack's plans import it with api_key, and an
            # export that came and went with the auth mode would block the update that removes it.
            CfnOutput(
                self,
                f"ApiId{model.name.title().replace('-', '')}",
                value=self.api.rest_api_id,
                export_name=api_id_export(settings.prefix, model.name),
                description=f"the REST API of model {model.name} (the access stack's usage plans name it)",
            )
        self._gateway_responses()
        self.models = self.api.root.add_resource(routes.PREFIX)
        self.model_resources: dict[str, apigw.Resource] = {}
        if web_acl_arn is not None:
            wafv2.CfnWebACLAssociation(
                self, "WebAclAssociation", resource_arn=self.stage.stage_arn, web_acl_arn=web_acl_arn
            )
        CfnOutput(self, "ApiUrl", value=self.api.url, description="the API's base URL (the stage included)")

    def _gateway_responses(self) -> None:
        """API Gateway's own refusals in the functions' error shape: ``{"error": {"code", "message"}}``."""
        for response_type, code in (
            (apigw.ResponseType.BAD_REQUEST_BODY, "malformed_request"),
            (apigw.ResponseType.THROTTLED, "throttled"),
            (apigw.ResponseType.QUOTA_EXCEEDED, "quota_exceeded"),
            (apigw.ResponseType.REQUEST_TOO_LARGE, "payload_too_large"),
            (apigw.ResponseType.INTEGRATION_TIMEOUT, "timeout"),
            (apigw.ResponseType.DEFAULT_4_XX, "client_error"),
            (apigw.ResponseType.DEFAULT_5_XX, "gateway_error"),
        ):
            # messageString is the message already quoted for JSON; the validation error has no such form.
            refusal = (
                "request body: expected a JSON object with either instances (a list) or inputs, "
                "or a JSON list of instances"
            )
            if self.processed:  # no quotes inside: the template writes the message as a JSON string
                refusal += (
                    "; a model with processing takes a JSON object with instances (a list) or a JSON list, "
                    "an image as a base64 string or an object with b64, a text as a string, or the raw body"
                )
            message = (
                f'"{refusal}"'
                if code == "malformed_request"  # jsii's ResponseType constants never compare equal
                else "$context.error.messageString"
            )
            self.api.add_gateway_response(
                f"Response{code.title().replace('_', '')}",
                type=response_type,
                templates={"application/json": f'{{"error": {{"code": "{code}", "message": {message}}}}}'},
            )

    def _method_options(self, model: str) -> dict[str, object]:
        auth = self.config.auth
        if auth == "iam":
            return {"authorization_type": apigw.AuthorizationType.IAM}
        if auth == "cognito":
            # An access token carrying the model's scope ("Integrate a REST API with an Amazon Cognito
            # user pool", https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-enable-cognito-user-pool.html)
            return {
                "authorization_type": apigw.AuthorizationType.COGNITO,
                "authorizer": self.authorizer,
                "authorization_scopes": [model_scope(self.prefix, model)],
            }
        return {"authorization_type": apigw.AuthorizationType.NONE, "api_key_required": True}

    def request_model(self, processing: ProcessingSettings | None) -> apigw.Model:
        """The predict method's JSON request model for a model with this processing (one per kind)."""
        kind = request_kind(processing)
        model = self._request_models.get(kind)
        if model is None:
            schema = PROCESSED_BODY_SCHEMA if kind == "processed" else HANDLER_BODY_SCHEMA
            name = "ProcessedPredictRequest" if kind == "processed" else "HandlerPredictRequest"
            model = self._request_models[kind] = self.api.add_model(name, content_type=JSON, schema=schema)
        return model

    def add_model(
        self, name: str, target: lambda_.IFunction, *, processing: ProcessingSettings | None = None
    ) -> apigw.Resource:
        """A Lambda model's routes, integrated with ``target`` (the model's ``live`` alias)."""
        resource = self._model_resource(name)
        integration = apigw.LambdaIntegration(target, proxy=True, timeout=Duration.seconds(29))
        options = self._method_options(name)
        checked = {
            "request_validator": self.validator,
            "request_models": {JSON: self.request_model(processing)},
        }
        for route in routes.served("lambda"):
            body = checked if route == routes.PREDICT else {}  # a predict body is checked at the gateway
            resource.add_resource(route.action).add_method(
                route.method,
                integration,
                **body,  # type: ignore[arg-type]
                **options,  # type: ignore[arg-type]
            )
        CfnOutput(
            self,
            f"Route{name.title().replace('-', '')}",
            value=self.api.url_for_path(routes.model_path(name, routes.PREDICT.action)),
            description=f"POST predictions from model {name}",
        )
        return resource

    def add_sagemaker_model(
        self,
        name: str,
        endpoint_name: str,
        endpoint_arn: str,
        *,
        processing: ProcessingSettings | None = None,
    ) -> apigw.Resource:
        """``POST /models/<name>/predict`` straight to SageMaker's InvokeEndpoint (an AWS integration).

        No function in between: no extra hop, cold start or cost per request, and the role may invoke
        this one endpoint only. The Content-Type and Accept headers are forwarded; the container's own
        status and body come back (SageMaker wraps a container's 4xx/5xx in a 424 ModelError, which the
        response template unwraps), and SageMaker's own refusals are answered in the functions' shape.
        """
        role = iam.Role(
            self,
            f"InvokeRole{name.title().replace('-', '')}",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description=f"API Gateway invokes SageMaker endpoint of model {name}",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn])
        )
        unwrap = (
            "#set($body = $util.parseJson($input.body))\n"
            "#set($context.responseOverride.status = $body.OriginalStatusCode)\n"
            "$body.OriginalMessage"
        )
        refusal = '{"error": {"code": "%s", "message": "%s"}}'
        integration = apigw.AwsIntegration(
            service="runtime.sagemaker",
            path=f"endpoints/{endpoint_name}/invocations",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=role,
                timeout=Duration.seconds(29),
                passthrough_behavior=apigw.PassthroughBehavior.WHEN_NO_TEMPLATES,
                request_parameters={
                    "integration.request.header.Content-Type": "method.request.header.Content-Type",
                    "integration.request.header.Accept": "method.request.header.Accept",
                },
                integration_responses=[
                    apigw.IntegrationResponse(
                        status_code="200",
                        response_parameters={
                            "method.response.header.Content-Type": "integration.response.header.Content-Type"
                        },
                    ),
                    apigw.IntegrationResponse(
                        selection_pattern="424",
                        status_code="400",  # overridden by the container's own status
                        response_templates={"application/json": unwrap},
                    ),
                    apigw.IntegrationResponse(
                        # ModelNotReadyException, SageMaker's own throttling of the endpoint: the caller
                        # may retry with backoff, as with API Gateway's own 429.
                        selection_pattern="429",
                        status_code="429",
                        response_templates={
                            "application/json": refusal
                            % ("throttled", "the model endpoint is busy or not ready: retry with backoff")
                        },
                    ),
                    apigw.IntegrationResponse(
                        selection_pattern="4(?!24|29)\\d{2}",  # patterns must not overlap
                        status_code="400",
                        response_templates={
                            "application/json": refusal
                            % ("bad_request", "SageMaker refused the request (too large, or malformed)")
                        },
                    ),
                    apigw.IntegrationResponse(
                        selection_pattern="5\\d{2}",
                        status_code="503",
                        response_templates={
                            "application/json": refusal
                            % ("model_unavailable", "the model endpoint is unavailable")
                        },
                    ),
                ],
            ),
        )
        resource = self._model_resource(name)
        assert routes.served("sagemaker") == (routes.PREDICT,)
        resource.add_resource(routes.PREDICT.action).add_method(
            routes.PREDICT.method,
            integration,
            request_validator=self.validator,
            request_models={JSON: self.request_model(processing)},
            request_parameters={
                "method.request.header.Content-Type": False,
                "method.request.header.Accept": False,
            },
            method_responses=[
                apigw.MethodResponse(
                    status_code="200", response_parameters={"method.response.header.Content-Type": True}
                ),
                apigw.MethodResponse(status_code="400"),
                apigw.MethodResponse(status_code="429"),
                apigw.MethodResponse(status_code="503"),
            ],
            **self._method_options(name),  # type: ignore[arg-type]
        )
        CfnOutput(
            self,
            f"Route{name.title().replace('-', '')}",
            value=self.api.url_for_path(routes.model_path(name, routes.PREDICT.action)),
            description=f"POST predictions from model {name} (SageMaker endpoint)",
        )
        return resource

    def _model_resource(self, name: str) -> apigw.Resource:
        resource = self.model_resources.get(name)
        if resource is None:
            resource = self.model_resources[name] = self.models.add_resource(name)
        return resource

    def add_predictions(self, name: str, target: lambda_.IFunction) -> apigw.Resource:
        """``GET /models/<name>/predictions/{id}``: stored batch predictions, with the model's auth."""
        resource = self._model_resource(name)
        for part in routes.STORED:
            resource = resource.add_resource(part)
        resource.add_method(
            routes.STORED_METHOD,
            apigw.LambdaIntegration(target, proxy=True, timeout=Duration.seconds(10)),
            request_validator=self.validator,
            request_parameters={"method.request.path.id": True},
            **self._method_options(name),  # type: ignore[arg-type]
        )
        CfnOutput(
            self,
            f"Predictions{name.title().replace('-', '')}",
            value=self.api.url_for_path(routes.stored_path(name)),
            description=f"GET a stored batch prediction of model {name} by record id",
        )
        return resource


# A body over what fits Lambda's 6,291,456-byte synchronous event: API Gateway cannot measure the event
# before invoking, and a request Lambda refuses is API Gateway's 500 ("Handling Lambda errors with an API
# Gateway API", https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html), so with
# WAF on, its Content-Length is checked first and the caller gets a 413 in the kit's shape. The event
# carries the body plus headers and context (the ~290 KB left), and binary bodies (.npy) as base64 (4/3).
# WAF reads a header as text, so "at least N" is a regular expression over the decimal number. A chunked
# body has no Content-Length: it still ends as the 500 (README: the local cloud's contract).
PAYLOAD_TOO_LARGE = "payload_too_large"
PAYLOAD_TOO_LARGE_BODY = (
    '{"error": {"code": "payload_too_large", "message": "the request body is over what a Lambda function '
    "accepts (6 MB for the whole event, 4.5 MB for a binary body): send fewer instances or use batch "
    'transform (s3://<BatchBucket>/incoming/<model>/)"}}'
)
AT_LEAST_6_000_000 = r"^([1-9][0-9]{7,}|[6-9][0-9]{6})$"
AT_LEAST_4_500_000 = r"^([1-9][0-9]{7,}|[5-9][0-9]{6}|4[5-9][0-9]{5})$"


def _content_length_at_least(regex: str) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
            regex_string=regex,
            field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(single_header={"Name": "content-length"}),
            text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
        )
    )


def _content_type_starts_with(prefix: str) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
            search_string=prefix,
            field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(single_header={"Name": "content-type"}),
            positional_constraint="STARTS_WITH",
            text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")],
        )
    )


def _lambda_payload_limit(binary_types: Sequence[str] = (NPY,)) -> wafv2.CfnWebACL.RuleProperty:
    # Every binary media type's body reaches a function base64-encoded: 4/3 of its size in the event. A
    # wildcard type (image/*) matches by its prefix (image/).
    prefixes = list(dict.fromkeys(t.removesuffix("*") for t in binary_types))
    matches = [_content_type_starts_with(p) for p in prefixes]
    is_binary = (
        matches[0]
        if len(matches) == 1
        else wafv2.CfnWebACL.StatementProperty(
            or_statement=wafv2.CfnWebACL.OrStatementProperty(statements=matches)
        )
    )
    binary = wafv2.CfnWebACL.StatementProperty(
        and_statement=wafv2.CfnWebACL.AndStatementProperty(
            statements=[_content_length_at_least(AT_LEAST_4_500_000), is_binary]
        )
    )
    return wafv2.CfnWebACL.RuleProperty(
        name="LambdaPayloadLimit",
        priority=1,
        action=wafv2.CfnWebACL.RuleActionProperty(
            block=wafv2.CfnWebACL.BlockActionProperty(
                custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                    response_code=413, custom_response_body_key=PAYLOAD_TOO_LARGE
                )
            )
        ),
        statement=wafv2.CfnWebACL.StatementProperty(
            or_statement=wafv2.CfnWebACL.OrStatementProperty(
                statements=[_content_length_at_least(AT_LEAST_6_000_000), binary]
            )
        ),
        visibility_config=_visibility("LambdaPayloadLimit"),
    )


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def web_acl(parent: Construct, config: ApiSettings, binary_types: Sequence[str]) -> wafv2.CfnWebACL:
    """The deployment's web ACL (``api.waf``), shared by every model's API stage; ``binary_types``: every
    model's binary media types (their bodies reach a function base64-encoded)."""

    def managed(name: str, priority: int, counted: tuple[str, ...] = ()) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS",
                    name=name,
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(
                            name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                        )
                        for rule in counted
                    ]
                    or None,
                )
            ),
            visibility_config=_visibility(name),
        )

    rate_limit = wafv2.CfnWebACL.RuleProperty(
        name="RateLimitPerIp",
        priority=0,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=config.waf_rate_limit, aggregate_key_type="IP"
            )
        ),
        visibility_config=_visibility("RateLimitPerIp"),
    )
    return wafv2.CfnWebACL(
        parent,
        "WebAcl",
        scope="REGIONAL",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=_visibility("ModelApi"),
        custom_response_bodies={
            PAYLOAD_TOO_LARGE: wafv2.CfnWebACL.CustomResponseBodyProperty(
                content_type="APPLICATION_JSON", content=PAYLOAD_TOO_LARGE_BODY
            )
        },
        rules=[
            rate_limit,
            _lambda_payload_limit(binary_types),
            managed("AWSManagedRulesAmazonIpReputationList", 2),
            managed("AWSManagedRulesCommonRuleSet", 3, COMMON_RULES_COUNTED),
            managed("AWSManagedRulesKnownBadInputsRuleSet", 4),
        ],
    )
