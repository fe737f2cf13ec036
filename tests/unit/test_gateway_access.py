"""Per-model access at the local API Gateway (mdk.local.cloud.services.gateway_access): IAM policy
evaluation for execute-api:Invoke, SigV4 callers found in moto's IAM and STS, API keys through usage
plans with their throttles and quotas, per-method stage throttling, and Cognito tokens (their signature,
issuer, expiry, token use and scopes) with the local client-credentials token endpoint.

Time is injected (a clock the test advances), never waited for.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from joserfc import jwt
from joserfc.jwk import RSAKey

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.services.gateway_access import (
    AccessRefused,
    CognitoTokens,
    Decision,
    Grant,
    Identity,
    MethodThrottles,
    Quota,
    TokenBucket,
    UsagePlan,
    UsagePlanLimits,
    authorize_invoke,
    client_credentials,
    condition_context,
    decide,
    evaluate,
    find_grant,
    http_jwks,
    issuer,
    method_arn,
    method_setting_key,
    verify_sigv4,
)

REGION, ACCOUNT = "us-east-1", moto_adapter.ACCOUNT
IRIS = method_arn(
    region=REGION, account=ACCOUNT, api_id="api1", stage="dev", verb="POST", path="/models/iris/predict"
)
DIGITS = method_arn(
    region=REGION, account=ACCOUNT, api_id="api2", stage="dev", verb="POST", path="/models/digits/predict"
)


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(resource: Any, action: Any = "execute-api:Invoke", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(resource: Any, action: Any = "execute-api:Invoke", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decision(*statements: dict[str, Any], resource: str = IRIS, **context: str) -> Decision:
    keys = {k.replace("__", ":"): v for k, v in context.items()}
    return evaluate([policy(*statements)], action="execute-api:Invoke", resource=resource, context=keys)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.day = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return self.day + dt.timedelta(seconds=self.t - 1000.0)


# ------------------------------------------------------------------------------- the method ARN


def test_the_method_arn_is_api_gateways_execute_api_resource() -> None:
    assert IRIS == "arn:aws:execute-api:us-east-1:123456789012:api1/dev/POST/models/iris/predict"
    assert method_setting_key("/models/iris/predict", "POST") == "~1models~1iris~1predict/POST"


# ------------------------------------------------------------------------------ IAM evaluation


def test_an_allow_on_one_models_routes_reaches_that_model_only() -> None:
    statement = allow("arn:aws:execute-api:us-east-1:123456789012:api1/dev/*/models/iris/*")
    assert decision(statement) is Decision.ALLOW
    assert decision(statement, resource=DIGITS) is Decision.IMPLICIT_DENY
    assert evaluate([], action="execute-api:Invoke", resource=IRIS) is Decision.IMPLICIT_DENY


def test_wildcards_star_and_question_mark_in_resources() -> None:
    assert decision(allow("arn:aws:execute-api:*:*:api?/dev/POST/models/iris/predict")) is Decision.ALLOW
    assert decision(allow("arn:aws:execute-api:us-east-1:123456789012:api?/dev/*")) is Decision.ALLOW
    assert decision(allow("arn:aws:execute-api:us-east-1:123456789012:api??/dev/*")) is Decision.IMPLICIT_DENY
    assert decision(allow("*")) is Decision.ALLOW
    assert decision(allow("arn:aws:execute-api:*")) is Decision.ALLOW  # a final * reaches past the colons
    # a * inside a segment stays in it: "us-*-1" does not swallow the account segment
    assert decision(allow("arn:aws:execute-api:us*123456789012:api1/*")) is Decision.IMPLICIT_DENY
    # resource ARNs are case-sensitive, and regex characters are literal
    assert decision(allow("arn:aws:execute-api:us-east-1:123456789012:API1/dev/*")) is Decision.IMPLICIT_DENY
    assert decision(allow("arn:aws:execute-api:us-east-1:123456789012:api1/dev/POST/models/iris/.*")) is (
        Decision.IMPLICIT_DENY
    )


def test_actions_match_case_insensitively_with_wildcards() -> None:
    for action in ("execute-api:Invoke", "execute-api:invoke", "EXECUTE-API:*", "*", "execute-api:Inv?ke"):
        assert decision(allow(IRIS, action)) is Decision.ALLOW, action
    assert decision(allow(IRIS, ["s3:GetObject", "execute-api:ManageConnections"])) is Decision.IMPLICIT_DENY
    assert decision(allow(IRIS, ["s3:GetObject", "execute-api:Invoke"])) is Decision.ALLOW


def test_an_explicit_deny_wins_over_any_allow_in_any_policy() -> None:
    both = [policy(allow("*")), policy(deny("arn:aws:execute-api:*:*:*/*/*/models/iris/*"))]
    assert evaluate(both, action="execute-api:Invoke", resource=IRIS) is Decision.EXPLICIT_DENY
    assert evaluate(both, action="execute-api:Invoke", resource=DIGITS) is Decision.ALLOW


def test_not_action_and_not_resource() -> None:
    # Allow everything but s3: execute-api:Invoke is allowed
    assert decision({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}) is Decision.ALLOW
    assert decision({"Effect": "Allow", "NotAction": "execute-api:*", "Resource": "*"}) is (
        Decision.IMPLICIT_DENY
    )
    # Deny every resource but iris's: digits is denied, iris is not (moto's evaluator permits both)
    only_iris = {"Effect": "Deny", "Action": "execute-api:Invoke", "NotResource": IRIS}
    assert decision(allow("*"), only_iris) is Decision.ALLOW
    assert decision(allow("*"), only_iris, resource=DIGITS) is Decision.EXPLICIT_DENY
    assert decision({"Effect": "Allow", "Action": "execute-api:Invoke", "NotResource": [DIGITS]}) is (
        Decision.ALLOW
    )


def test_a_single_statement_object_and_a_statement_without_resource() -> None:
    single = {"Version": "2012-10-17", "Statement": allow(IRIS)}
    assert evaluate([single], action="execute-api:Invoke", resource=IRIS) is Decision.ALLOW
    # an identity policy statement needs a Resource: without one it grants nothing
    assert decision({"Effect": "Allow", "Action": "execute-api:Invoke"}) is Decision.IMPLICIT_DENY


def test_conditions_on_the_request_context() -> None:
    from_here = {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}}
    assert decision(allow(IRIS, Condition=from_here), aws__SourceIp="127.0.0.1") is Decision.ALLOW
    assert decision(allow(IRIS, Condition=from_here), aws__SourceIp="192.0.2.1") is Decision.IMPLICIT_DENY
    # an Allow whose condition does not hold is no explicit deny (moto's evaluator answers DENIED)
    assert (
        evaluate(
            [policy(allow(IRIS, Condition=from_here)), policy(allow("*"))],
            action="execute-api:Invoke",
            resource=IRIS,
            context={"aws:SourceIp": "192.0.2.1"},
        )
        is Decision.ALLOW
    )
    # keys are case-insensitive; every operator and every key must hold; any value of a key may
    both = {"StringEquals": {"AWS:USERNAME": ["ann", "bob"]}, "Bool": {"aws:SecureTransport": "true"}}
    assert decision(allow(IRIS, Condition=both), aws__username="bob", aws__SecureTransport="true") is (
        Decision.ALLOW
    )
    assert decision(allow(IRIS, Condition=both), aws__username="bob", aws__SecureTransport="false") is (
        Decision.IMPLICIT_DENY
    )
    dates = {"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}
    assert decision(allow(IRIS, Condition=dates), aws__CurrentTime="2026-12-02T12:00:00Z") is Decision.ALLOW
    assert decision(allow(IRIS, Condition=dates), aws__CurrentTime="2027-02-01T00:00:00Z") is (
        Decision.IMPLICIT_DENY
    )
    numbers = {"NumericGreaterThan": {"aws:EpochTime": "100"}}
    assert decision(allow(IRIS, Condition=numbers), aws__EpochTime="101") is Decision.ALLOW
    like = {
        "StringLike": {"aws:UserAgent": "mdk/*"},
        "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"},
    }
    context = {"aws__UserAgent": "mdk/1.0", "aws__PrincipalArn": "arn:aws:iam::123456789012:user/ann"}
    assert decision(allow(IRIS, Condition=like), **context) is Decision.ALLOW


def test_absent_keys_negated_operators_if_exists_and_null() -> None:
    # an absent key: a condition is false, a negated one true, ...IfExists true
    assert decision(allow(IRIS, Condition={"StringEquals": {"aws:SourceVpc": "vpc-1"}})) is (
        Decision.IMPLICIT_DENY
    )
    assert decision(allow(IRIS, Condition={"StringNotEquals": {"aws:SourceVpc": "vpc-1"}})) is Decision.ALLOW
    assert decision(allow(IRIS, Condition={"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}})) is (
        Decision.ALLOW
    )
    assert decision(allow(IRIS, Condition={"Null": {"aws:SourceVpc": "true"}})) is Decision.ALLOW
    assert decision(allow(IRIS, Condition={"Null": {"aws:SourceIp": "true"}}), aws__SourceIp="1.2.3.4") is (
        Decision.IMPLICIT_DENY
    )
    # a negated operator with several values: true only when the value is none of them
    not_these = {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.1/32"]}}
    assert decision(deny(IRIS, Condition=not_these), allow("*"), aws__SourceIp="127.0.0.1") is Decision.ALLOW
    assert decision(deny(IRIS, Condition=not_these), allow("*"), aws__SourceIp="192.0.2.1") is (
        Decision.EXPLICIT_DENY
    )


def test_an_operator_not_evaluated_locally_fails_closed() -> None:
    unknown = {"BinaryEquals": {"aws:SourceIp": "AAAA"}}
    assert decision(allow(IRIS, Condition=unknown), aws__SourceIp="127.0.0.1") is Decision.IMPLICIT_DENY
    assert decision(allow("*"), deny(IRIS, Condition=unknown), aws__SourceIp="127.0.0.1") is (
        Decision.EXPLICIT_DENY
    )


def test_a_session_policy_bounds_an_assumed_roles_policies() -> None:
    role = Identity(
        "assumed-role",
        "arn:aws:sts::123456789012:assumed-role/r/s",
        ACCOUNT,
        "ASIA",
        "secret",
        "AROA:s",
        policies=(policy(allow("*")),),
        session_policy=policy(allow(IRIS)),
    )
    assert decide(role, IRIS, {}) is Decision.ALLOW
    assert decide(role, DIGITS, {}) is Decision.IMPLICIT_DENY
    root = Identity.root(ACCOUNT, "test", "test")
    assert decide(root, DIGITS, {}) is Decision.ALLOW  # identity policies do not restrict the root user


def test_refusals_name_the_caller_and_the_resource_as_api_gateway_does() -> None:
    user = Identity(
        "user",
        "arn:aws:iam::123456789012:user/ann",
        ACCOUNT,
        "AKIA",
        "s",
        "AIDA",
        policies=(policy(allow(IRIS)),),
    )
    authorize_invoke(user, IRIS, {})
    with pytest.raises(AccessRefused) as implicit:
        authorize_invoke(user, DIGITS, {})
    assert (implicit.value.status, implicit.value.kind) == (403, "ACCESS_DENIED")
    assert implicit.value.message == (
        f"User: arn:aws:iam::123456789012:user/ann is not authorized to perform: execute-api:Invoke "
        f"on resource: {DIGITS}"
    )
    denied = Identity(
        "user", user.arn, ACCOUNT, "AKIA", "s", "AIDA", policies=(policy(allow("*"), deny(DIGITS)),)
    )
    with pytest.raises(AccessRefused) as explicit:
        authorize_invoke(denied, DIGITS, {})
    assert explicit.value.message.endswith(f"on resource: {DIGITS} with an explicit deny")


def test_the_condition_context_of_a_request() -> None:
    user = Identity(
        "user",
        "arn:aws:iam::123456789012:user/ann",
        ACCOUNT,
        "AKIA",
        "s",
        "AIDAX",
        principal_arn="arn:aws:iam::123456789012:user/ann",
        username="ann",
    )
    at = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    context = condition_context(user, region=REGION, source_ip="127.0.0.1", user_agent="curl/8", now=at)
    assert context["aws:CurrentTime"] == "2026-12-02T12:00:00Z"
    assert context["aws:EpochTime"] == str(int(at.timestamp()))
    assert context["aws:username"] == "ann"
    assert context["aws:PrincipalType"] == "User"
    assert context["aws:SecureTransport"] == "true"
    assert context["aws:UserAgent"] == "curl/8"


# ------------------------------------------------------------------ SigV4 callers in moto's IAM/STS


@pytest.fixture(scope="module")
def aws() -> Iterator[moto_adapter.LocalAws]:
    local = moto_adapter.LocalAws()
    local.start()
    try:
        yield local
    finally:
        local.stop()


def client(aws: moto_adapter.LocalAws, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=aws.endpoint_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def signed(
    credentials: Credentials, *, body: bytes = b"{}", path: str = "/dev/models/iris/predict"
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:8080{path}", data=body)
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    # what the HTTP client sends: the prepared headers and the Host the signature covers
    return {"host": "127.0.0.1:8080", **{k.lower(): v for k, v in request.prepare().headers.items()}}


def caller(
    credentials: Credentials, *, body: bytes = b"{}", sent: bytes | None = None, lookup: Any = None
) -> Identity:
    headers = signed(credentials, body=body)
    return verify_sigv4(
        verb="POST",
        target="/dev/models/iris/predict",
        headers=headers,
        body=body if sent is None else sent,
        region=REGION,
        identities=lookup or moto_adapter.access_key_owner,
    )


def test_an_iam_users_policies_decide_which_model_it_reaches(aws: moto_adapter.LocalAws) -> None:
    iam = client(aws, "iam")
    iam.create_user(UserName="ann")
    document = json.dumps(
        policy(allow("arn:aws:execute-api:us-east-1:123456789012:api1/dev/*/models/iris/*"))
    )
    arn = iam.create_policy(PolicyName="invoke-iris", PolicyDocument=document)["Policy"]["Arn"]
    iam.attach_user_policy(UserName="ann", PolicyArn=arn)
    key = iam.create_access_key(UserName="ann")["AccessKey"]
    identity = caller(Credentials(key["AccessKeyId"], key["SecretAccessKey"]))
    assert identity.kind == "user"
    assert identity.arn == "arn:aws:iam::123456789012:user/ann"
    authorize_invoke(identity, IRIS, {})
    with pytest.raises(AccessRefused) as refused:
        authorize_invoke(identity, DIGITS, {})
    assert refused.value.message.startswith("User: arn:aws:iam::123456789012:user/ann is not authorized")
    # an inline deny on the user overrides the managed allow
    iam.put_user_policy(UserName="ann", PolicyName="no-iris", PolicyDocument=json.dumps(policy(deny(IRIS))))
    with pytest.raises(AccessRefused, match="with an explicit deny"):
        authorize_invoke(caller(Credentials(key["AccessKeyId"], key["SecretAccessKey"])), IRIS, {})


def test_group_policies_apply_to_their_members(aws: moto_adapter.LocalAws) -> None:
    iam = client(aws, "iam")
    iam.create_user(UserName="bea")
    iam.create_group(GroupName="digits-callers")
    iam.add_user_to_group(GroupName="digits-callers", UserName="bea")
    iam.put_group_policy(
        GroupName="digits-callers", PolicyName="digits", PolicyDocument=json.dumps(policy(allow(DIGITS)))
    )
    key = iam.create_access_key(UserName="bea")["AccessKey"]
    identity = caller(Credentials(key["AccessKeyId"], key["SecretAccessKey"]))
    authorize_invoke(identity, DIGITS, {})
    with pytest.raises(AccessRefused):
        authorize_invoke(identity, IRIS, {})


def test_an_inactive_key_an_unknown_key_and_a_wrong_secret_are_refused(aws: moto_adapter.LocalAws) -> None:
    iam = client(aws, "iam")
    iam.create_user(UserName="cid")
    key = iam.create_access_key(UserName="cid")["AccessKey"]
    good = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    assert caller(good).username == "cid"
    with pytest.raises(AccessRefused) as wrong:
        caller(Credentials(key["AccessKeyId"], "not-the-secret"))
    assert (wrong.value.kind, wrong.value.message) == (
        "INVALID_SIGNATURE",
        "The request signature we calculated does not match the signature you provided.",
    )
    with pytest.raises(AccessRefused, match="security token included in the request is invalid"):
        caller(Credentials("AKIAUNKNOWNKEY000000", "x"))
    iam.update_access_key(UserName="cid", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    with pytest.raises(AccessRefused, match="security token included in the request is invalid"):
        caller(good)


def test_a_body_changed_after_signing_is_refused(aws: moto_adapter.LocalAws) -> None:
    root = Identity.root(ACCOUNT, "test", "test")
    lookup = {"test": root}.get
    assert caller(Credentials("test", "test"), lookup=lookup) is root
    with pytest.raises(AccessRefused, match="does not match"):
        caller(Credentials("test", "test"), body=b'{"a": 1}', sent=b'{"a": 2}', lookup=lookup)


def test_an_assumed_role_session_is_its_roles_policies_bounded_by_its_session_policy(
    aws: moto_adapter.LocalAws,
) -> None:
    iam, sts = client(aws, "iam"), client(aws, "sts")
    trust = policy({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName="caller", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(
        RoleName="caller", PolicyName="all-models", PolicyDocument=json.dumps(policy(allow("*")))
    )
    session = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="job")["Credentials"]
    credentials = Credentials(session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
    identity = caller(credentials)
    assert identity.arn == "arn:aws:sts::123456789012:assumed-role/caller/job"
    assert identity.principal_arn == role["Arn"]
    assert identity.request_context()["userArn"] == identity.arn
    authorize_invoke(identity, DIGITS, {})
    # the session token must be the session's: without it, or another, the key is not valid
    without = Credentials(session["AccessKeyId"], session["SecretAccessKey"])
    with pytest.raises(AccessRefused, match="security token included in the request is invalid"):
        caller(without)
    other = Credentials(session["AccessKeyId"], session["SecretAccessKey"], "another-token")
    with pytest.raises(AccessRefused, match="security token included in the request is invalid"):
        caller(other)
    bounded = sts.assume_role(
        RoleArn=role["Arn"], RoleSessionName="iris-only", Policy=json.dumps(policy(allow(IRIS)))
    )["Credentials"]
    narrow = caller(Credentials(bounded["AccessKeyId"], bounded["SecretAccessKey"], bounded["SessionToken"]))
    authorize_invoke(narrow, IRIS, {})
    with pytest.raises(AccessRefused):
        authorize_invoke(narrow, DIGITS, {})


def test_an_expired_session_is_refused(aws: moto_adapter.LocalAws) -> None:
    sts = client(aws, "sts")
    session = sts.assume_role(
        RoleArn="arn:aws:iam::123456789012:role/caller", RoleSessionName="late", DurationSeconds=900
    )["Credentials"]
    credentials = Credentials(session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
    headers = signed(credentials)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=901)
    with pytest.raises(AccessRefused) as expired:
        verify_sigv4(
            verb="POST",
            target="/dev/models/iris/predict",
            headers=headers,
            body=b"{}",
            region=REGION,
            identities=moto_adapter.access_key_owner,
            now=later,
        )
    assert (expired.value.status, expired.value.kind) == (403, "EXPIRED_TOKEN")


# --------------------------------------------------------------------- API keys and usage plans


@pytest.fixture(scope="module")
def apis(aws: moto_adapter.LocalAws) -> dict[str, str]:
    apigw = client(aws, "apigateway")
    return {name: apigw.create_rest_api(name=name)["id"] for name in ("iris", "digits")}


def key(apigw: Any, name: str, *, enabled: bool = True) -> dict[str, Any]:
    created: dict[str, Any] = apigw.create_api_key(
        name=name, enabled=enabled, value=f"{name}-key-value-0123456789"
    )
    return created


def plan(
    apigw: Any, name: str, stages: list[dict[str, Any]], keys: list[dict[str, Any]], **limits: Any
) -> str:
    plan_id: str = apigw.create_usage_plan(name=name, apiStages=stages, **limits)["id"]
    for k in keys:
        apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=k["id"], keyType="API_KEY")
    return plan_id


def test_a_key_reaches_only_the_api_stages_of_its_usage_plan(
    aws: moto_adapter.LocalAws, apis: dict[str, str]
) -> None:
    apigw = client(aws, "apigateway")
    iris_key, off_key, loose_key = (
        key(apigw, "iris-team"),
        key(apigw, "off", enabled=False),
        key(apigw, "loose"),
    )
    plan(apigw, "iris-team", [{"apiId": apis["iris"], "stage": "dev"}], [iris_key, off_key])
    grant = find_grant(apigw, iris_key["value"], api_id=apis["iris"], stage="dev")
    assert (grant.key_id, grant.plan.name) == (iris_key["id"], "iris-team")
    for value, api_id, stage in (
        (iris_key["value"], apis["digits"], "dev"),  # another model's API
        (iris_key["value"], apis["iris"], "prod"),  # another stage
        (off_key["value"], apis["iris"], "dev"),  # a disabled key
        (loose_key["value"], apis["iris"], "dev"),  # a key in no plan
        ("no-such-key-value-0123456789", apis["iris"], "dev"),
        (None, apis["iris"], "dev"),
    ):
        with pytest.raises(AccessRefused) as refused:
            find_grant(apigw, value, api_id=api_id, stage=stage)
        assert (refused.value.status, refused.value.kind, refused.value.message) == (
            403,
            "INVALID_API_KEY",
            "Forbidden",
        )


def test_what_moto_stores_of_a_plan_is_read_whole(aws: moto_adapter.LocalAws, apis: dict[str, str]) -> None:
    apigw = client(aws, "apigateway")
    k = key(apigw, "reader")
    stages: list[dict[str, Any]] = [
        {
            "apiId": apis["iris"],
            "stage": "dev",
            "throttle": {"/models/iris/predict/POST": {"rateLimit": 2.0, "burstLimit": 3}},
        },
        {"apiId": apis["digits"], "stage": "dev"},
    ]
    plan(
        apigw,
        "reader",
        stages,
        [k],
        throttle={"rateLimit": 10.0, "burstLimit": 20},
        quota={"limit": 1000, "period": "WEEK", "offset": 1},
    )
    read = find_grant(apigw, k["value"], api_id=apis["digits"], stage="dev").plan
    assert read.throttle is not None
    assert (read.throttle.rate, read.throttle.burst) == (10.0, 20)
    assert read.quota == Quota(1000, "WEEK", 1)
    method = read.stages[(apis["iris"], "dev")]["/models/iris/predict/POST"]
    assert (method.rate, method.burst) == (2.0, 3)
    assert read.stages[(apis["digits"], "dev")] == {}


def grant_of(plan_: UsagePlan, api_id: str = "api1", key_id: str = "k1") -> Grant:
    return Grant(key_id, "value", plan_, api_id, "dev")


def refusal(limits: UsagePlanLimits, grant: Grant, path: str = "/models/iris/predict") -> str | None:
    try:
        limits.admit(grant, path, "POST")
    except AccessRefused as exc:
        return f"{exc.status} {exc.kind}"
    return None


def test_a_plans_throttle_is_per_key_and_global_to_its_stages() -> None:
    clock = Clock()
    plan_ = UsagePlan.of(
        {
            "id": "p",
            "apiStages": [{"apiId": "api1", "stage": "dev"}, {"apiId": "api2", "stage": "dev"}],
            "throttle": {"rateLimit": 1.0, "burstLimit": 2},
        }
    )
    limits = UsagePlanLimits(clock=clock, now=clock.now)
    on_iris, on_digits, other_key = grant_of(plan_), grant_of(plan_, "api2"), grant_of(plan_, key_id="k2")
    assert refusal(limits, on_iris) is None
    assert refusal(limits, on_digits, "/models/digits/predict") is None
    assert refusal(limits, on_iris) == "429 THROTTLED"  # the key's bucket is shared by the plan's stages
    assert refusal(limits, other_key) is None  # another key has its own
    clock.t += 1.0
    assert refusal(limits, on_iris) is None
    assert refusal(limits, on_iris) == "429 THROTTLED"


def test_a_plans_method_throttle_limits_that_method_only() -> None:
    clock = Clock()
    throttle = {"/models/iris/predict/POST": {"rateLimit": 1.0, "burstLimit": 1}}
    plan_ = UsagePlan.of({"id": "p", "apiStages": [{"apiId": "api1", "stage": "dev", "throttle": throttle}]})
    limits = UsagePlanLimits(clock=clock, now=clock.now)
    grant = grant_of(plan_)
    assert refusal(limits, grant) is None
    assert refusal(limits, grant) == "429 THROTTLED"
    assert refusal(limits, grant, "/models/iris/explain") is None  # another method of the stage


def test_a_quota_counts_admitted_requests_per_key_per_period() -> None:
    clock = Clock()
    plan_ = UsagePlan.of(
        {
            "id": "p",
            "apiStages": [{"apiId": "api1", "stage": "dev"}],
            "throttle": {"rateLimit": 1.0, "burstLimit": 2},
            "quota": {"limit": 3, "period": "DAY", "offset": 0},
        }
    )
    limits = UsagePlanLimits(clock=clock, now=clock.now)
    grant = grant_of(plan_)
    assert [refusal(limits, grant) for _ in range(3)] == [None, None, "429 THROTTLED"]
    assert limits.used(grant) == 2  # the throttled request is not counted
    clock.t += 5.0
    assert [refusal(limits, grant) for _ in range(2)] == [None, "429 QUOTA_EXCEEDED"]
    assert refusal(limits, grant_of(plan_, key_id="k2")) is None  # per key
    clock.t += 24 * 3600.0  # the next day (UTC)
    assert refusal(limits, grant) is None


def test_quota_periods_start_on_their_offset_day() -> None:
    wednesday = dt.datetime(2026, 12, 2, 23, 59, tzinfo=dt.UTC)
    assert Quota(1, "DAY").window(wednesday) == dt.date(2026, 12, 2)
    assert Quota(1, "WEEK", 0).window(wednesday) == dt.date(2026, 11, 29)  # Sunday
    assert Quota(1, "WEEK", 1).window(wednesday) == dt.date(2026, 11, 30)  # Monday
    assert Quota(1, "WEEK", 3).window(wednesday) == dt.date(2026, 12, 2)  # Wednesday itself
    assert Quota(1, "MONTH", 0).window(wednesday) == dt.date(2026, 12, 1)
    assert Quota(1, "MONTH", 4).window(wednesday) == dt.date(2026, 11, 5)  # the 5th: last month's


# ------------------------------------------------------------------------ stage method throttling


def test_each_method_has_its_own_bucket_so_one_models_burst_leaves_another_served() -> None:
    clock = Clock()
    settings: dict[str, dict[str, Any]] = {
        "*/*": {"throttlingRateLimit": 1.0, "throttlingBurstLimit": 1},
        "~1models~1iris~1predict/POST": {"throttlingRateLimit": 1.0, "throttlingBurstLimit": 3},
        "~1models~1digits~1explain/*": {"throttlingRateLimit": 1.0, "throttlingBurstLimit": 2},
        "~1models~1other~1predict/POST": {"metricsEnabled": True},
    }
    throttles = MethodThrottles(settings, clock=clock)

    def served(path: str, n: int) -> list[str]:
        out = []
        for _ in range(n):
            try:
                throttles.admit(path, "POST")
                out.append("ok")
            except AccessRefused as exc:
                out.append(f"{exc.status} {exc.kind}: {exc.message}")
        return out

    no = "429 THROTTLED: Too Many Requests"
    assert served("/models/iris/predict", 4) == ["ok", "ok", "ok", no]
    assert served("/models/digits/predict", 2) == ["ok", no]  # */*, a bucket of its own
    assert served("/models/digits/explain", 3) == ["ok", "ok", no]  # <path>/*
    assert served("/models/other/predict", 2) == ["ok", no]  # a setting without throttling: */*
    clock.t += 1.0
    assert served("/models/digits/predict", 1) == ["ok"]
    assert MethodThrottles({}).setting("/models/iris/predict", "POST") is None


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, 2, clock=clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.t += 0.5
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.t += 100.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]


# ----------------------------------------------------------------------------------- Cognito


@pytest.fixture(scope="module")
def pool(aws: moto_adapter.LocalAws) -> dict[str, Any]:
    idp = client(aws, "cognito-idp")
    pool_id = idp.create_user_pool(PoolName="models")["UserPool"]["Id"]
    idp.create_resource_server(
        UserPoolId=pool_id,
        Identifier="mdk",
        Name="mdk",
        Scopes=[{"ScopeName": n, "ScopeDescription": n} for n in ("iris", "digits")],
    )

    def app(name: str, **options: Any) -> dict[str, Any]:
        made: dict[str, Any] = idp.create_user_pool_client(UserPoolId=pool_id, ClientName=name, **options)
        described: dict[str, Any] = made["UserPoolClient"]
        return described

    machine = {"GenerateSecret": True, "AllowedOAuthFlowsUserPoolClient": True}
    return {
        "id": pool_id,
        "iris": app(
            "iris-app", AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=["mdk/iris"], **machine
        ),
        "code": app("code-app", AllowedOAuthFlows=["code"], AllowedOAuthScopes=["mdk/iris"], **machine),
        "public": app("public", AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=["mdk/iris"]),
        "users": app("users", ExplicitAuthFlows=["ADMIN_NO_SRP_AUTH"]),
    }


def basic(app: dict[str, Any], secret: str | None = None) -> str:
    pair = f"{app['ClientId']}:{app['ClientSecret'] if secret is None else secret}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def token_answer(
    aws: moto_adapter.LocalAws, authorization: str | None, **form: str
) -> tuple[int, dict[str, Any]]:
    answer = client_credentials(
        cognito=client(aws, "cognito-idp"),
        form=form,
        authorization=authorization,
        region=REGION,
        signing_key=moto_adapter.cognito_signing_key(),
    )
    return answer.status, answer.body


def test_the_token_endpoint_issues_an_access_token_with_the_granted_scopes(
    aws: moto_adapter.LocalAws, pool: dict[str, Any]
) -> None:
    status, body = token_answer(aws, basic(pool["iris"]), grant_type="client_credentials", scope="mdk/iris")
    assert status == 200, body
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    tokens = CognitoTokens(http_jwks(aws.endpoint_url))
    iss = issuer(REGION, pool["id"])
    claims = tokens.verify(f"Bearer {body['access_token']}", issuers=[iss], scopes=["mdk/iris"])
    assert claims["token_use"] == "access"
    assert claims["client_id"] == claims["sub"] == pool["iris"]["ClientId"]
    assert claims["scope"] == "mdk/iris"
    with pytest.raises(AccessRefused) as other_model:
        tokens.verify(body["access_token"], issuers=[iss], scopes=["mdk/digits"])
    assert (other_model.value.status, other_model.value.kind) == (401, "UNAUTHORIZED")
    # no scope asked: every custom scope the client is allowed
    status, body = token_answer(aws, basic(pool["iris"]), grant_type="client_credentials")
    assert status == 200
    assert tokens.verify(body["access_token"], issuers=[iss], scopes=["mdk/iris"])["scope"] == "mdk/iris"
    # client_secret_post
    status, _ = token_answer(
        aws,
        None,
        grant_type="client_credentials",
        client_id=pool["iris"]["ClientId"],
        client_secret=pool["iris"]["ClientSecret"],
    )
    assert status == 200


def test_the_token_endpoint_refuses_as_cognitos_does(
    aws: moto_adapter.LocalAws, pool: dict[str, Any]
) -> None:
    grant = {"grant_type": "client_credentials", "scope": "mdk/iris"}
    cases = [
        (basic(pool["iris"], "wrong-secret"), grant, "invalid_client"),
        ("Basic " + base64.b64encode(b"nosuchclient:x").decode(), grant, "invalid_client"),
        (None, grant, "invalid_client"),
        (basic(pool["public"], ""), grant, "invalid_client"),  # a client without a secret
        (basic(pool["iris"]), {**grant, "scope": "mdk/digits"}, "invalid_scope"),
        (basic(pool["iris"]), {**grant, "scope": "mdk/iris mdk/digits"}, "invalid_scope"),
        (basic(pool["code"]), grant, "unauthorized_client"),
        (basic(pool["iris"]), {**grant, "grant_type": "password"}, "unsupported_grant_type"),
        (basic(pool["iris"]), {"scope": "mdk/iris"}, "invalid_request"),
    ]
    for authorization, form, error in cases:
        assert token_answer(aws, authorization, **form) == (400, {"error": error}), (form, error)


def test_scoped_methods_take_access_tokens_and_unscoped_methods_id_tokens(
    aws: moto_adapter.LocalAws, pool: dict[str, Any]
) -> None:
    idp = client(aws, "cognito-idp")
    idp.admin_create_user(UserPoolId=pool["id"], Username="ann", TemporaryPassword="Passw0rd!x")
    idp.admin_set_user_password(UserPoolId=pool["id"], Username="ann", Password="Passw0rd!x", Permanent=True)
    signed_in = idp.admin_initiate_auth(
        UserPoolId=pool["id"],
        ClientId=pool["users"]["ClientId"],
        AuthFlow="ADMIN_NO_SRP_AUTH",
        AuthParameters={"USERNAME": "ann", "PASSWORD": "Passw0rd!x"},
    )["AuthenticationResult"]
    tokens = CognitoTokens(http_jwks(aws.endpoint_url))
    iss = [issuer(REGION, pool["id"])]
    assert tokens.verify(signed_in["IdToken"], issuers=iss, scopes=[])["cognito:username"] == "ann"
    with pytest.raises(AccessRefused):  # an ID token on a scoped method
        tokens.verify(signed_in["IdToken"], issuers=iss, scopes=["mdk/iris"])
    with pytest.raises(AccessRefused):  # an access token without the model's scope
        tokens.verify(signed_in["AccessToken"], issuers=iss, scopes=["mdk/iris"])
    _, body = token_answer(aws, basic(pool["iris"]), grant_type="client_credentials", scope="mdk/iris")
    with pytest.raises(AccessRefused):  # an access token on a method without scopes
        tokens.verify(body["access_token"], issuers=iss, scopes=[])


def test_forged_foreign_and_expired_tokens_are_unauthorized(
    aws: moto_adapter.LocalAws, pool: dict[str, Any]
) -> None:
    _, body = token_answer(aws, basic(pool["iris"]), grant_type="client_credentials", scope="mdk/iris")
    token = body["access_token"]
    iss = issuer(REGION, pool["id"])
    tokens = CognitoTokens(http_jwks(aws.endpoint_url))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    widened = base64.urlsafe_b64encode(json.dumps({**claims, "scope": "mdk/digits"}).encode()).rstrip(b"=")
    stranger = RSAKey.generate_key(2048)
    forged = jwt.encode({"kid": "dummy", "alg": "RS256"}, {**claims, "scope": "mdk/digits"}, stranger)
    for bad in (
        f"{header}.{widened.decode()}.{signature}",  # the payload changed after signing
        forged,  # signed with another key
        "not-a-jwt",
        "",
    ):
        with pytest.raises(AccessRefused) as refused:
            tokens.verify(bad, issuers=[iss], scopes=["mdk/digits"])
        assert (refused.value.status, refused.value.message) == (401, "Unauthorized")
    with pytest.raises(AccessRefused):  # a pool the authorizer does not list
        tokens.verify(token, issuers=[issuer(REGION, "us-east-1_other")], scopes=["mdk/iris"])
    later = CognitoTokens(http_jwks(aws.endpoint_url), now=lambda: float(claims["exp"]) + 1)
    with pytest.raises(AccessRefused) as expired:
        later.verify(token, issuers=[iss], scopes=["mdk/iris"])
    assert expired.value.message == "The incoming token has expired"


# ------------------------------------------------------------- through the gateway, per auth mode
#
# The local API Gateway (Gateway.handle, no port) over two REST APIs in the local AWS, one model each, as
# the model stacks deploy them; the function is a fake that records the event it gets.


class Recorder:
    """A function runner that keeps each event and answers 200."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, name: str, qualifier: str | None, payload: bytes, *, timeout: float) -> Any:
        from mdk.local.cloud.services.lambda_ import Invocation

        self.events.append(json.loads(payload))
        answer = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": '{"ok": 1}'}
        return Invocation(name, qualifier or "live", json.dumps(answer).encode(), False, 1.0)


CLIENT_ERROR = '{"error": {"code": "client_error", "message": $context.error.messageString}}'


def model_api(
    aws: moto_adapter.LocalAws, model: str, *, authorization: str, key: bool = False, **method: Any
) -> str:
    """A REST API with POST /models/<model>/predict (a Lambda proxy), deployed at stage dev, with the
    kit's DEFAULT_4XX gateway response and a method throttle of 2 at once for predict."""
    apigw = client(aws, "apigateway")
    api_id: str = apigw.create_rest_api(name=f"{model}-{authorization}-{key}")["id"]
    parent = apigw.get_resources(restApiId=api_id)["items"][0]["id"]
    for part in ("models", model, "predict"):
        parent = apigw.create_resource(restApiId=api_id, parentId=parent, pathPart=part)["id"]
    if "authorizerId" in method:
        method["authorizerId"] = apigw.create_authorizer(
            restApiId=api_id,
            name=f"{model}-pool",
            type="COGNITO_USER_POOLS",
            providerARNs=[method["authorizerId"]],
            identitySource="method.request.header.Authorization",
        )["id"]
    apigw.put_method(
        restApiId=api_id,
        resourceId=parent,
        httpMethod="POST",
        authorizationType=authorization,
        apiKeyRequired=key,
        **method,
    )
    apigw.put_integration(
        restApiId=api_id,
        resourceId=parent,
        httpMethod="POST",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{model}-fn:live/invocations",
    )
    apigw.create_deployment(restApiId=api_id, stageName="dev")
    apigw.update_stage(
        restApiId=api_id,
        stageName="dev",
        patchOperations=[
            {"op": "replace", "path": f"/~1models~1{model}~1predict/POST/throttling/{name}", "value": value}
            for name, value in (("rateLimit", "1"), ("burstLimit", "2"))
        ],
    )
    apigw.put_gateway_response(
        restApiId=api_id, responseType="DEFAULT_4XX", responseTemplates={"application/json": CLIENT_ERROR}
    )
    return api_id


@pytest.fixture
def gateway(aws: moto_adapter.LocalAws) -> Iterator[tuple[Any, Recorder]]:
    from mdk.local.cloud.services.apigateway import Gateway

    runner = Recorder()
    served = Gateway(
        apigateway=client(aws, "apigateway"),
        runner=runner,  # type: ignore[arg-type]
        endpoints=None,  # type: ignore[arg-type]
        region=REGION,
        credentials=("test", "test"),
        port=0,
    )
    try:
        yield served, runner
    finally:
        served._server.server_close()  # never started


def post(gateway: Any, model: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    status, out, body = gateway.handle("POST", f"/dev/models/{model}/predict", headers or {}, b"{}")
    return status, out, json.loads(body)


def test_iam_a_user_allowed_on_one_model_is_refused_on_the_other(
    aws: moto_adapter.LocalAws, gateway: tuple[Any, Recorder]
) -> None:
    served, runner = gateway
    apis = {m: model_api(aws, m, authorization="AWS_IAM") for m in ("iris", "digits")}
    served.load_all([(apis["iris"], "dev"), (apis["digits"], "dev")])
    iam = client(aws, "iam")
    iam.create_user(UserName="iris-caller")
    resource = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{apis['iris']}/dev/*/models/iris/*"
    iam.put_user_policy(
        UserName="iris-caller", PolicyName="iris", PolicyDocument=json.dumps(policy(allow(resource)))
    )
    key = iam.create_access_key(UserName="iris-caller")["AccessKey"]
    credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def signed_post(model: str) -> tuple[int, dict[str, str], Any]:
        return post(served, model, signed(credentials, path=f"/dev/models/{model}/predict"))

    status, _, body = signed_post("iris")
    assert (status, body) == (200, {"ok": 1})
    assert runner.events[-1]["requestContext"]["identity"]["userArn"] == (
        "arn:aws:iam::123456789012:user/iris-caller"
    )
    status, headers, body = signed_post("digits")
    assert (status, headers["x-amzn-errortype"]) == (403, "ACCESS_DENIED")
    assert body == {
        "error": {
            "code": "client_error",
            "message": "User: arn:aws:iam::123456789012:user/iris-caller is not authorized to perform: "
            f"execute-api:Invoke on resource: arn:aws:execute-api:{REGION}:{ACCOUNT}:{apis['digits']}"
            "/dev/POST/models/digits/predict",
        }
    }
    assert len(runner.events) == 1  # the refused request never reached the function
    # the local credentials are the account's root user: both models
    root = Credentials("test", "test")
    assert [post(served, m, signed(root, path=f"/dev/models/{m}/predict"))[0] for m in apis] == [200, 200]


def test_api_keys_a_consumers_key_reaches_its_models_within_its_plan(
    aws: moto_adapter.LocalAws, gateway: tuple[Any, Recorder]
) -> None:
    served, runner = gateway
    apis = {m: model_api(aws, m, authorization="NONE", key=True) for m in ("iris", "digits")}
    served.load_all([(apis["iris"], "dev"), (apis["digits"], "dev")])
    apigw = client(aws, "apigateway")
    team = apigw.create_api_key(name="team", enabled=True, value="team-key-value-for-iris-0123")
    throttle = {"/models/iris/predict/POST": {"rateLimit": 1.0, "burstLimit": 1}}
    plan(apigw, "team", [{"apiId": apis["iris"], "stage": "dev", "throttle": throttle}], [team])
    status, _, _ = post(served, "iris", {"x-api-key": team["value"]})
    assert status == 200
    assert runner.events[-1]["requestContext"]["identity"]["apiKeyId"] == team["id"]
    status, headers, body = post(served, "iris", {"x-api-key": team["value"]})  # the plan's method bucket
    assert (status, headers["x-amzn-errortype"], body["error"]["message"]) == (
        429,
        "THROTTLED",
        "Too Many Requests",
    )
    status, headers, body = post(served, "digits", {"x-api-key": team["value"]})  # not in its plan
    assert (status, headers["x-amzn-errortype"], body["error"]["message"]) == (
        403,
        "INVALID_API_KEY",
        "Forbidden",
    )
    assert post(served, "digits")[0] == 403  # no key


def test_stage_method_throttling_is_per_method(
    aws: moto_adapter.LocalAws, gateway: tuple[Any, Recorder]
) -> None:
    served, _ = gateway
    apis = {m: model_api(aws, m, authorization="NONE") for m in ("iris", "digits")}
    served.load_all([(apis["iris"], "dev"), (apis["digits"], "dev")])
    assert [post(served, "iris")[0] for _ in range(3)] == [200, 200, 429]  # burst 2 per method
    assert [post(served, "digits")[0] for _ in range(2)] == [200, 200]  # iris's burst took none of these


def test_cognito_a_clients_scopes_reach_their_models_only(
    aws: moto_adapter.LocalAws, gateway: tuple[Any, Recorder], pool: dict[str, Any]
) -> None:
    served, runner = gateway
    pool_arn = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{pool['id']}"
    apis = {
        m: model_api(
            aws,
            m,
            authorization="COGNITO_USER_POOLS",
            authorizerId=pool_arn,
            authorizationScopes=[f"mdk/{m}"],
        )
        for m in ("iris", "digits")
    }
    served.load_all([(apis["iris"], "dev"), (apis["digits"], "dev")])
    status, headers, body = served.handle(
        "POST",
        "/oauth2/token",
        {"authorization": basic(pool["iris"]), "content-type": "application/x-www-form-urlencoded"},
        b"grant_type=client_credentials&scope=mdk%2Firis",
    )
    assert status == 200, body
    token = json.loads(body)["access_token"]
    status, _, _ = post(served, "iris", {"authorization": f"Bearer {token}"})
    assert status == 200
    claims = runner.events[-1]["requestContext"]["authorizer"]["claims"]
    assert (claims["scope"], claims["client_id"]) == ("mdk/iris", pool["iris"]["ClientId"])
    status, headers, body = post(served, "digits", {"authorization": f"Bearer {token}"})
    assert (status, headers["x-amzn-errortype"], body["error"]["message"]) == (
        401,
        "UNAUTHORIZED",
        "Unauthorized",
    )
    status, _, refused = served.handle(
        "POST",
        "/oauth2/token",
        {"authorization": basic(pool["iris"], "bad")},
        b"grant_type=client_credentials",
    )
    assert (status, json.loads(refused)) == (400, {"error": "invalid_client"})
