"""The batch pipeline's resources: bucket, rules, functions, tables, transform models, alarms, route."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from mdk_runtime import batch
from tests.infra.conftest import REPO, Synth, dumps, one, resources, synth_config, write_config
from tests.infra.layout import imported


def by_prefix(template: dict[str, Any], kind: str, prefix: str) -> dict[str, Any]:
    [(_, found)] = [(k, v) for k, v in resources(template, kind).items() if k.startswith(prefix)]
    return found


def statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    policies = [
        v
        for v in resources(template, "AWS::IAM::Policy").values()
        if any(r["Ref"].startswith(role_prefix) for r in v["Properties"]["Roles"])
    ]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_batch_bucket_is_encrypted_tls_only_logged_and_sends_events(synth_repo_config: Synth) -> None:
    template = synth_repo_config.shared_json
    bucket = by_prefix(template, "AWS::S3::Bucket", "StorageBatch")["Properties"]
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert sse["BucketKeyEnabled"] is True
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "batch/"
    assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    rules = {r.get("Prefix"): r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["staging/"]["ExpirationInDays"] == 7  # staged copies go after a week
    assert rules[None]["ExpirationInDays"] == 365
    policy = by_prefix(template, "AWS::S3::BucketPolicy", "StorageBatch")
    assert '"aws:SecureTransport": "false"' in dumps(policy)
    # No custom resource: S3 talks to EventBridge natively.
    assert not [k for k, v in template["Resources"].items() if v["Type"].startswith("Custom::")]


def test_rules_route_uploads_and_job_states_to_the_functions(synth_repo_config: Synth) -> None:
    template = synth_repo_config.shared_json
    rules = {k: v["Properties"] for k, v in resources(template, "AWS::Events::Rule").items()}
    uploads = next(v for k, v in rules.items() if k.startswith("BatchUploads"))
    pattern = uploads["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"prefix": "incoming/"}]}
    assert pattern["detail"]["bucket"]["name"] == [
        {
            "Ref": next(
                k
                for k in template["Resources"]
                if k.startswith("StorageBatch") and template["Resources"][k]["Type"] == "AWS::S3::Bucket"
            )
        }
    ]
    # The pattern the batch tests route moto's S3 notifications through is this very one.
    assert pattern == batch.uploads_pattern(pattern["detail"]["bucket"]["name"][0])
    [target] = uploads["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("BatchTrigger")
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].startswith("BatchDeadLetters")
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}

    finished = next(v for k, v in rules.items() if k.startswith("BatchJobsFinished"))
    assert finished["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Transform Job State Change"],
        "detail": {
            "TransformJobName": [{"prefix": batch.job_prefix("mdk-dev")}],
            "TransformJobStatus": ["Completed", "Failed", "Stopped"],
        },
    }
    assert finished["EventPattern"] == batch.jobs_finished_pattern("mdk-dev")
    assert finished["Targets"][0]["Arn"]["Fn::GetAtt"][0].startswith("BatchStatus")
    handovers = next(v for k, v in rules.items() if k.startswith("BatchStoreHandovers"))
    assert handovers["EventPattern"]["source"] == ["mdk.batch"]
    assert handovers["Targets"][0]["Arn"]["Fn::GetAtt"][0].startswith("BatchStatus")


def test_functions_are_zip_packaged_with_the_layer_and_a_failure_destination(
    synth_repo_config: Synth,
) -> None:
    template = synth_repo_config.shared_json
    layer = one(template, "AWS::Lambda::LayerVersion")[0]
    for name, handler in (("BatchTrigger", "batch_trigger"), ("BatchStatus", "batch_status")):
        function = by_prefix(template, "AWS::Lambda::Function", name)["Properties"]
        assert function["Handler"] == f"lambda_handlers.{handler}.handler"
        assert function["Runtime"] == "python3.14"
        assert function["Architectures"] == ["arm64"]
        assert function["Layers"] == [{"Ref": layer}]
        assert function["TracingConfig"] == {"Mode": "Active"}
        assert function["Timeout"] == 900
        env = function["Environment"]["Variables"]
        assert set(env) >= {
            "MDK_BATCH_BUCKET",
            batch.DEPLOYMENT_ENV,
            batch.REGISTRY_ENV,
            "MDK_IDEMPOTENCY_TABLE",
            "MDK_ALERT_TOPIC_ARN",
            "MDK_DATA_KEY_ARN",
        }
        # No model is named: each model's transform model is in its registry entry, read at run time.
        assert env[batch.REGISTRY_ENV] == "/mdk/mdk/dev/models/"
        assert "iris" not in dumps(env)
        assert "digits" not in dumps(env)
    configs = resources(template, "AWS::Lambda::EventInvokeConfig")
    assert len(configs) == 2
    for config in configs.values():
        props = config["Properties"]
        assert props["MaximumRetryAttempts"] == 2
        destination = props["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination["Fn::GetAtt"][0].startswith("BatchDeadLetters")


def test_idempotency_table_expires_records_and_is_recoverable(synth_repo_config: Synth) -> None:
    template = synth_repo_config.shared_json
    [table] = resources(template, "AWS::DynamoDB::Table").values()  # no store in this config
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"


def test_transform_models_use_the_serving_container_by_device(synth_sagemaker: Synth) -> None:
    transform = {  # each model's own stack's
        k: v["Properties"]
        for name in ("scorer", "ab")
        for k, v in resources(synth_sagemaker.model_json(name), "AWS::SageMaker::Model").items()
        if k.startswith(f"BatchModel{name}")
    }
    assert len(transform) == 2
    scorer = next(v for k, v in transform.items() if k.startswith("BatchModelscorer"))
    ab = next(v for k, v in transform.items() if k.startswith("BatchModelab"))
    assert scorer["PrimaryContainer"]["Environment"]["MDK_DEVICE"] == "cpu"  # ml.m5.large by default
    assert ab["PrimaryContainer"]["Environment"]["MDK_DEVICE"] == "gpu"  # batch on ml.g4dn.xlarge
    assert scorer["PrimaryContainer"]["Environment"]["MDK_MAX_BODY_BYTES"] == str(6 * 1024 * 1024 + 1024)
    # The endpoint's network settings apply to its batch jobs too.
    assert scorer["EnableNetworkIsolation"] is True
    assert scorer["VpcConfig"]["Subnets"] == ["subnet-0abc1234def567890"]


def test_roles_are_least_privilege(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    text = dumps(resources(template, "AWS::IAM::Policy"))
    assert "s3:DeleteObject" not in text
    assert '"s3:*"' not in text
    assert '"sagemaker:*"' not in text

    trigger = statements(template, "BatchTriggerRole")
    create = next(s for s in trigger if "sagemaker:CreateTransformJob" in actions(s))
    assert dumps(create["Resource"]).endswith(f':transform-job/{batch.job_prefix("mdk-dev")}*"]]}}')
    pass_role = next(s for s in trigger if "iam:PassRole" in actions(s))
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert dumps(pass_role["Resource"]).endswith(':role/mdk/mdk/dev/batch/*"]]}')  # the transform roles
    reads = next(s for s in trigger if "s3:GetObjectVersion" in actions(s))
    assert dumps(reads["Resource"]).endswith('/incoming/*"]]}')

    status = statements(template, "BatchStatusRole")
    assert not [s for s in status if "sagemaker:CreateTransformJob" in actions(s)]
    listing = next(s for s in status if "s3:ListBucket" in actions(s))
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["results/*"]}}

    transform = statements(template, "BatchModelirisExecutionRole")
    gets = [s for s in transform if actions(s) == ["s3:GetObject"]]
    assert any('/staging/iris/*"]]}' in dumps(s["Resource"]) for s in gets)
    puts = next(s for s in transform if "s3:PutObject" in actions(s))
    assert dumps(puts["Resource"]).endswith('/results/iris/*"]]}')


def test_dead_letters_and_function_errors_alarm(synth_repo_config: Synth) -> None:
    template = synth_repo_config.merged_json
    alarms = [v["Properties"] for v in resources(template, "AWS::CloudWatch::Alarm").values()]
    dlq = [a for a in alarms if "ApproximateNumberOfMessagesVisible" in dumps(a.get("Metrics"))]
    assert len(dlq) == 1
    assert dlq[0]["Threshold"] == 0
    assert dlq[0]["ComparisonOperator"] == "GreaterThanThreshold"
    assert dlq[0]["AlarmActions"]
    names = [a.get("AlarmName") for a in alarms]
    assert "mdk-dev-batch-trigger-Fault-Count-Warning" in names
    assert "mdk-dev-batch-status-Fault-Count-Warning" in names
    dashboard = by_prefix(template, "AWS::CloudWatch::Dashboard", "BatchDashboards")["Properties"]
    assert dashboard["DashboardName"] == "mdk-dev-batch"
    body = dumps(dashboard["DashboardBody"])
    for metric in ("BatchRunsFailed", "BatchRecordsIn", "BatchRecordErrors", "PredictionsStored"):
        assert metric in body


def test_prediction_store_and_its_route(synth_variant: Synth) -> None:
    template = synth_variant.merged_json
    tables = resources(template, "AWS::DynamoDB::Table")
    store = next(v["Properties"] for k, v in tables.items() if k.startswith("BatchPredictionStore"))
    assert store["KeySchema"] == [
        {"AttributeName": "model", "KeyType": "HASH"},
        {"AttributeName": "id", "KeyType": "RANGE"},
    ]
    assert store["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    function = by_prefix(template, "AWS::Lambda::Function", "BatchPredictions")["Properties"]
    assert "iris" not in dumps(function["Environment"])  # it lists no model: the route is the gate
    assert (function["Timeout"], function["MemorySize"]) == (10, 256)
    # Called by API Gateway only: no asynchronous retry configuration of its own.
    assert len(resources(template, "AWS::Lambda::EventInvokeConfig")) == 2
    reads = statements(template, "BatchPredictionsRole")
    dynamo = [a for s in reads for a in actions(s) if a.startswith("dynamodb:")]
    assert dynamo == ["dynamodb:GetItem"]
    writes = statements(template, "BatchStatusRole")
    assert sorted(a for s in writes for a in actions(s) if a.startswith("dynamodb:Batch")) == [
        "dynamodb:BatchWriteItem"
    ]
    # The function is the shared stack's; the route is the stored model's, on its own API, and calls the
    # function by the ARN the shared stack exports.
    function_id = next(
        k for k in resources(synth_variant.shared_json, "AWS::Lambda::Function") if "Predictions" in k
    )
    function_arn = imported(synth_variant, "predictions-function-arn", {"Fn::GetAtt": [function_id, "Arn"]})
    own = synth_variant.model_json("iris-fast")
    [route] = [
        v["Properties"]
        for v in resources(own, "AWS::ApiGateway::Method").values()
        if v["Properties"]["HttpMethod"] == "GET"
        and dumps(function_arn) in dumps(v["Properties"]["Integration"])
    ]
    assert route["ApiKeyRequired"] is True  # the API's auth (api_key in this config)
    assert route["RequestParameters"] == {"method.request.path.id": True}
    paths = [v["Properties"]["PathPart"] for v in resources(own, "AWS::ApiGateway::Resource").values()]
    assert "predictions" in paths
    assert "{id}" in paths
    # API Gateway may invoke it for this route of this API's stages only
    permissions = [
        v["Properties"]
        for v in resources(own, "AWS::Lambda::Permission").values()
        if v["Properties"]["FunctionName"] == function_arn
    ]
    assert len(permissions) == 2  # the stage's and the console's test invocations
    for permission in permissions:
        assert dumps(permission["SourceArn"]).endswith('/GET/models/iris-fast/predictions/*"]]}')
    # the model without a store has no such route
    assert dumps(function_arn) not in dumps(synth_variant.model_json("iris-big-bang"))
    # The transform job settings reach the functions (batch_models.json in their code).
    transform = next(
        v["Properties"]
        for k, v in resources(template, "AWS::SageMaker::Model").items()
        if k.startswith("BatchModelirisfast")
    )
    assert transform["PrimaryContainer"]["Environment"]["MDK_MAX_CONCURRENT_TRANSFORMS"] == "4"
    assert not [k for k in resources(template, "AWS::SageMaker::Model") if "bigbang" in k.lower()]
    assert json.loads(json.dumps(store))  # serialisable: a sanity check on the template


LONG_PROJECT = """
    project: customer-churn-model
    models:
      - name: churn
        artifact: MODELS/iris/v1/model.onnx
        runtime: lambda
"""


def _scopes(template: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The status rule's pattern, and the job ARN pattern the trigger's and the status' grants name."""
    [finished] = [
        v["Properties"]["EventPattern"]
        for k, v in resources(template, "AWS::Events::Rule").items()
        if k.startswith("BatchJobsFinished")
    ]
    jobs = []
    for role in ("BatchTriggerRole", "BatchStatusRole"):
        [grant] = [s for s in statements(template, role) if "sagemaker:DescribeTransformJob" in actions(s)]
        jobs.append(grant["Resource"]["Fn::Join"][1][-1].rsplit("/", 1)[1])
    assert jobs[0] == jobs[1]
    streams = [
        s["Resource"]
        for k, v in resources(template, "AWS::IAM::Policy").items()
        if k.startswith("BatchModelchurn")
        for s in v["Properties"]["PolicyDocument"]["Statement"]
        if "logs:PutLogEvents" in actions(s)
    ]
    [stream_grant] = streams
    assert f'/aws/sagemaker/TransformJobs:log-stream:{jobs[0]}"' in dumps(stream_grant)
    return finished, jobs[0], dumps(stream_grant)


def _matches_arn_pattern(pattern: str, name: str) -> bool:
    assert pattern.endswith("*")
    assert "*" not in pattern[:-1]
    return name.startswith(pattern[:-1])


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("stages")
    path = write_config(directory, LONG_PROJECT)
    return {
        stage: synth_config(path, directory / stage, context={"stage": stage}).merged_json
        for stage in ("dev", "prod")
    }


def test_stages_of_a_long_project_name_see_only_their_own_jobs(stages: dict[str, dict[str, Any]]) -> None:
    """customer-churn-model-dev and -prod once shared a 20-character job prefix: each saw the other's jobs."""
    recorded = json.loads(
        (REPO / "tests" / "events" / "sagemaker-transform-job-state-change.json").read_text()
    )
    run = "20261129T101502Z-0123456789ab"
    jobs = {stage: batch.job_name(f"customer-churn-model-{stage}", "churn", run) for stage in stages}
    scopes = {stage: _scopes(template) for stage, template in stages.items()}
    assert scopes["dev"][1] != scopes["prod"][1]
    for stage, (pattern, arn_pattern, _) in scopes.items():
        rule = EventPattern.load(json.dumps(pattern))
        for other, job in jobs.items():
            event = copy.deepcopy(recorded)  # AWS's own example event, with this job's name
            event["detail"]["TransformJobName"] = job
            own = other == stage
            assert rule.matches_event(event) is own, (stage, job)
            assert _matches_arn_pattern(arn_pattern, job) is own, (stage, job)
