"""cdk-nag (AwsSolutions and Serverless packs) on every stack, and every finding the kit acknowledges.

Each acknowledgement names the rule and why it does not apply; the README lists them for review.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


@dataclass(frozen=True)
class Acknowledged:
    rule: str
    reason: str


XRAY_WILDCARD = Acknowledged(
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
    "X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords) supports no resource-level "
    "permissions; they are the role's only actions on every resource (its other grants name their "
    "resources, or prefixes acknowledged each with its own reason)",
)
SYNC_ONLY_DLQ = Acknowledged(
    "Serverless::Serverless-LambdaDLQ",
    "invoked synchronously only, by API Gateway: a dead-letter queue applies to asynchronous invocations, "
    "and callers get every failure as an HTTP status",
)
MODEL_FUNCTION_DLQ = Acknowledged(
    "Serverless::Serverless-LambdaDLQ",
    "API Gateway (through the live alias) and the pre-traffic hook (on the new version) invoke it "
    "synchronously, and their callers get every failure as an HTTP status; its only asynchronous invoker "
    "is its own live version's shadow mirror (lambda_handlers/shadow.py), whose events are copies of "
    "requests already answered: a copy that fails is retried by Lambda, then dropped, losing one "
    "comparison and no request; a dead-letter queue would keep users' request bodies for no consumer",
)
HOOK_DLQ = Acknowledged(
    "Serverless::Serverless-LambdaDLQ",
    "CodeDeploy waits for the hook's report: a hook that fails to report fails the deployment, which "
    "rolls back; there is no event to redeliver later",
)
CODEDEPLOY_ALIAS = Acknowledged(
    "AwsSolutions::AwsSolutions-IAM5[Resource::<FUNCTION>:*]",
    "CodeDeploy shifts the weights of this one function's alias (lambda:GetAlias/UpdateAlias on its "
    "qualifiers, for which IAM takes the qualified ARN); no other function",
)
CODEDEPLOY_ALARMS = Acknowledged(
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
    "cloudwatch:DescribeAlarms is read-only (alarm definitions and states): CodeDeploy calls it for the "
    "group's alarms before and during a rollout; it is the role's only action on every resource (its "
    "other grants are this function's alias and its pre-traffic hook, acknowledged each on its own)",
)
CODEDEPLOY_HOOK_QUALIFIERS = Acknowledged(
    "AwsSolutions::AwsSolutions-IAM5[Resource::<HOOK>:*]",
    "CodeDeploy may invoke the one pre-traffic hook function, any qualifier of it; no other function",
)
APIGW_LOGGING_ROLE = Acknowledged(
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AmazonAPIGatewayPushToCloudWatchLogs]",
    "API Gateway writes execution and access logs (APIG1, APIG6) with one role per account and region "
    "(AWS::ApiGateway::Account): this role, assumed by API Gateway only, carries nothing but AWS's "
    "managed policy for it (CloudWatch Logs actions only), as the API Gateway guide prescribes",
)
NOT_COGNITO = Acknowledged(
    "AwsSolutions::AwsSolutions-COG4",
    "the API is authenticated with IAM (SigV4) or API keys as configured (api.auth); Cognito user pool "
    "authorizers are the 'cognito' option",
)
API_KEY_AUTH = Acknowledged(
    "AwsSolutions::AwsSolutions-APIG4",
    "api.auth is 'api_key' by choice: every method requires an API key of the usage plan (throttle and "
    "quota per key); IAM (SigV4) is the default",
)
_IS_A_DLQ = (
    "this queue is the dead-letter queue of the alarm e-mail subscription (the SNS redrive policy, which "
    "cdk-nag does not follow); a dead-letter queue needs none of its own"
)
SNS_DLQ = (
    Acknowledged("AwsSolutions::AwsSolutions-SQS3", _IS_A_DLQ),
    Acknowledged("Serverless::Serverless-SQSRedrivePolicy", _IS_A_DLQ),
)
ACCESS_LOG_BUCKET = Acknowledged(
    "AwsSolutions::AwsSolutions-S1",
    "this is the server access log bucket the data buckets log to; logging it to itself would loop",
)
SAGEMAKER_ROLE_WILDCARDS = Acknowledged(
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
    "ecr:GetAuthorizationToken and cloudwatch:PutMetricData take no resource (the latter is limited by a "
    "condition to SageMaker's namespaces); with a VPC, the ec2 Describe actions take none either, and "
    "the network-interface actions act on interfaces SageMaker creates in the configured subnets, whose "
    "ids no template can name in advance",
)
CAPTURE_PREFIX_REASON = (
    "SageMaker (and a Lambda model's capture sender, in the same layout) names data capture files by "
    "endpoint or function, variant or version, and time under the model's prefix; this grant is "
    "s3:PutObject under that prefix only (no read, no delete)"
)
SAGEMAKER_LOG_STREAMS_REASON = (
    "SageMaker names the log streams of the endpoint's log group after variants and instances; the grant "
    "is that one group (/aws/sagemaker/Endpoints/<endpoint>) and its streams"
)

_IS_BATCH_DLQ = (
    "this queue is the dead-letter queue of the batch functions and of their EventBridge targets; it "
    "alarms to the alarm topic while it holds any message, and a dead-letter queue needs none of its own"
)
BATCH_DLQ = (
    Acknowledged("AwsSolutions::AwsSolutions-SQS3", _IS_BATCH_DLQ),
    Acknowledged("Serverless::Serverless-SQSRedrivePolicy", _IS_BATCH_DLQ),
)
ASYNC_FAILURE_DESTINATION = Acknowledged(
    "Serverless::Serverless-LambdaDLQ",
    "invoked asynchronously by EventBridge: failures after two retries go to the on-failure destination "
    "(the batch dead-letter queue, which alarms), which records the error with the event",
)
BATCH_JOBS_REASON = (
    "transform jobs are named per run (<job prefix><model>-<run id>); the job prefix is unique per "
    "deployment (its name's head and a hash of the whole name) and, but for a collision of that 32-bit "
    "hash, no prefix starts another's, so the role may act on this deployment's jobs only"
)
BATCH_INCOMING_REASON = (
    "the trigger reads the uploaded files, whatever their names, under incoming/ of the batch bucket only"
)
BATCH_STAGING_REASON = (
    "the trigger copies each run's input to staging/<model>/<run>/ (no read, no delete, no other prefix)"
)
BATCH_RESULTS_REASON = (
    "run manifests and outputs live under results/<model>/<run>/, named at run time: the trigger may put "
    "objects there, the status function get and put them; no delete"
)
TRANSFORM_PREFIXES_REASON = (
    "a model's transform jobs read its staged inputs (staging/<model>/) and write its results "
    "(results/<model>/) under run folders named at run time; no other prefix, no delete"
)
TRANSFORM_ROLES_REASON = (
    "the trigger may pass to SageMaker only (iam:PassedToService) the roles under this deployment's "
    "transform role path (/mdk/<project>/<stage>/batch/): each is one model's transform role, created by "
    "that model's stack; no project or stage name holds a slash, so no other deployment's role is under "
    "the path, and models deployed later need no change here"
)
BATCH_REGISTRY_REASON = (
    "the batch functions read a model's settings and SageMaker model at run time from its registry entry "
    "(ssm:GetParameter, nothing else) under this deployment's /mdk/<project>/<stage>/models/, written by "
    "the model's own stack: one entry per model, named by the model, so the shared stack lists none"
)
SHADOW_MIRROR_REASON = (
    "shadow testing: the live version mirrors sampled requests to a candidate version of the same "
    "function, chosen at run time (mdk shadow start); any version or alias of this one function "
    "(<function>:*), granted to its own role only"
)
TRANSFORM_LOG_STREAMS_REASON = (
    "SageMaker writes a transform job's logs to streams named after the job and instance in its shared "
    "/aws/sagemaker/TransformJobs group; the grant names that one group and, of its streams, only those "
    "named after this deployment's job prefix"
)

NO_WAF = Acknowledged(
    "AwsSolutions::AwsSolutions-APIG3",
    "WAF is opt-in (api.waf: true): a web ACL costs a monthly fee plus per request; the API is "
    "authenticated and throttled without it",
)


def enable(app: cdk.App) -> None:
    """Run both packs at synth: a finding that is not acknowledged fails ``cdk synth``."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def acknowledge(scope: IConstruct, *rules: Acknowledged) -> None:
    cdk.Validations.of(scope).acknowledge(*(cdk.Acknowledgment(id=r.rule, reason=r.reason) for r in rules))


MODEL_INVOKE_ROUTES_REASON = (
    "a model's invoke policy (api.auth: iam) grants execute-api:Invoke, nothing else, on that model's "
    "routes of its own API stage (<api>/<stage>/*/models/<model>/*): any method of any route below the "
    "model's prefix, no other model and no other API"
)

# The monitor job (stacks/quality.py).
MONITOR_SCHEDULED = Acknowledged(
    "Serverless::Serverless-LambdaDLQ",
    "EventBridge Scheduler invokes the monitor job; a run it cannot deliver after its retries goes to the "
    "schedule's own dead-letter queue (which alarms), and the next run reads the same window again",
)
MONITOR_READ_REASON = (
    "the monitor job lists and reads the model's captures, named by version, function or endpoint, "
    "variant and hour under capture/<model>/; read-only, that model's prefix only"
)
MONITOR_RUNS_REASON = (
    "the monitor job writes one run summary per run, named by its time, under monitor/<model>/runs/; "
    "put-only, that model's prefix only"
)
_IS_MONITOR_DLQ = (
    "this queue is the dead-letter queue of the monitor job's schedule; it alarms to the alarm topic "
    "while it holds any message, and a dead-letter queue needs none of its own"
)
MONITOR_DLQ = (
    Acknowledged("AwsSolutions::AwsSolutions-SQS3", _IS_MONITOR_DLQ),
    Acknowledged("Serverless::Serverless-SQSRedrivePolicy", _IS_MONITOR_DLQ),
)
