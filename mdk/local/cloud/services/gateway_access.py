"""Who may call which method of the local API Gateway, decided as API Gateway decides it.

Every model has its own REST API, so access per model is access per API stage. This module holds the
decisions; :mod:`mdk.local.cloud.services.apigateway` asks them per request and answers a refusal with
the stack's gateway response of the refusal's type. What is decided, and from what:

* **IAM** (``AWS_IAM`` methods): the SigV4 signature is checked with the secret of the access key that
  signed (an IAM user's key, or an assumed-role session's key with its session token, as moto's IAM and
  STS hold them: :func:`mdk.local.cloud.moto_adapter.access_key_owner`); then the caller's identity
  policies (the user's inline and attached policies and its groups', or the role's, and the session
  policy of an assumed role) are evaluated for ``execute-api:Invoke`` on the method ARN
  ``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<VERB>/<path>``, explicit Deny over Allow over
  the implicit deny (:func:`evaluate`). The local cloud's own credentials are the account's root user,
  which identity policies do not restrict. Not evaluated: the API's resource policy (the kit sets none),
  permissions boundaries, SCPs.
* **API keys** (``apiKeyRequired``): the key must be enabled and in a usage plan that lists the API
  stage; the plan's throttle (per key, across the plan's stages), its per-method throttle for the stage
  and its quota (per key, per day, week or month) are enforced per key (:class:`UsagePlanLimits`).
* **Method throttling**: the stage's method settings (``~1models~1iris~1predict/POST``, ``*/*``) give each
  method its own token bucket, so one model's burst cannot starve another's (:class:`MethodThrottles`).
* **Cognito** (``COGNITO_USER_POOLS``): the JWT's signature is verified against its pool's JWKS (what
  moto serves at ``/<pool id>/.well-known/jwks.json``), its issuer is one of the authorizer's pools and it
  has not expired; a method with authorization scopes takes an access token holding one of them, a method
  without takes an ID token (:class:`CognitoTokens`). :func:`client_credentials` is Cognito's token
  endpoint for the client credentials grant, signing with moto's Cognito key.

moto's own IAM evaluator (``moto.iam.access_control.IAMPolicyStatement``) is not used for the matching:
in moto 5.2.5 it has no ``?`` wildcard and no NotResource (a Deny with NotResource permits), compares
actions case-sensitively, and answers an explicit deny for an Allow statement whose condition does not
hold. Its identity resolution and policy collection are used (through the adapter).
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

log = logging.getLogger("mdk.local")

INVOKE = "execute-api:Invoke"
#: What API Gateway refuses, with which gateway response type ("Gateway response types for API Gateway",
#: https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
ACCESS_DENIED, INVALID_API_KEY, UNAUTHORIZED = "ACCESS_DENIED", "INVALID_API_KEY", "UNAUTHORIZED"
THROTTLED, QUOTA_EXCEEDED = "THROTTLED", "QUOTA_EXCEEDED"
INVALID_SIGNATURE, EXPIRED_TOKEN = "INVALID_SIGNATURE", "EXPIRED_TOKEN"
MISSING_AUTHENTICATION_TOKEN = "MISSING_AUTHENTICATION_TOKEN"  # noqa: S105 - a response type
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request,"
    r"\s*SignedHeaders=(?P<headers>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_BAD_TOKEN = "The security token included in the request is invalid."  # noqa: S105 - a message
_MISMATCH = "The request signature we calculated does not match the signature you provided."


class AccessRefused(Exception):
    """A request API Gateway refuses itself: the status, the gateway response type, the message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


Clock = Callable[[], float]
Now = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------------------ IAM


@dataclass(frozen=True)
class Identity:
    """The principal behind an access key, with what its requests are evaluated against."""

    kind: Literal["root", "user", "assumed-role"]
    arn: str  # the caller's ARN as API Gateway names it (an assumed role: its session's sts ARN)
    account: str
    access_key: str
    secret_key: str
    user_id: str
    session_token: str | None = None
    #: identity-based policy documents (inline and managed, the user's groups' included)
    policies: tuple[Mapping[str, Any], ...] = ()
    #: an assumed role's session policy, which bounds what the role's policies allow
    session_policy: Mapping[str, Any] | None = None
    active: bool = True  # an IAM access key can be made Inactive
    expires_at: dt.datetime | None = None  # an assumed-role session expires
    principal_arn: str = ""  # aws:PrincipalArn: the user, or the role (not its session)
    username: str | None = None

    @classmethod
    def root(cls, account: str, access_key: str, secret_key: str) -> Identity:
        arn = f"arn:aws:iam::{account}:root"
        return cls("root", arn, account, access_key, secret_key, account, principal_arn=arn)

    def request_context(self) -> dict[str, Any]:
        """``requestContext.identity`` of an IAM-authorized request, as API Gateway fills it."""
        return {
            "accessKey": self.access_key,
            "accountId": self.account,
            "caller": self.user_id,
            "user": self.user_id,
            "userArn": self.arn,
        }


IdentityLookup = Callable[[str], Identity | None]


def method_arn(*, region: str, account: str, api_id: str, stage: str, verb: str, path: str) -> str:
    """The resource ``execute-api:Invoke`` is evaluated on ("Control access to a REST API with IAM
    permissions", https://docs.aws.amazon.com/apigateway/latest/developerguide/permissions.html):
    ``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<HTTP verb>/<resource path>``, the path as
    requested (path parameters as their values) without its leading slash."""
    return f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{verb}/{path.lstrip('/')}"


class Decision(enum.Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


def evaluate(
    policies: Iterable[Mapping[str, Any]],
    *,
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> Decision:
    """IAM's decision over identity policies ("Policy evaluation logic",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html): a Deny
    statement that applies is an explicit deny, whatever allows; otherwise an Allow that applies allows;
    otherwise the implicit deny. A statement applies when its Action (or NotAction), its Resource (or
    NotResource) and its Condition all match. A condition this module cannot evaluate (an operator it
    does not know) makes its statement undecided, and undecided fails closed: such a Deny applies, such an
    Allow does not (AWS would have refused the policy, or decided; the local cloud never allows more)."""
    keys = {k.lower(): v for k, v in (context or {}).items()}
    allowed = False
    for policy in policies:
        for statement in _statements(policy):
            applies = _applies(statement, action, resource, keys)
            effect = statement.get("Effect")
            if effect == "Deny" and applies is not False:
                return Decision.EXPLICIT_DENY
            if effect == "Allow" and applies is True:
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def decide(identity: Identity, resource: str, context: Mapping[str, str]) -> Decision:
    """``execute-api:Invoke`` for ``identity``: the root user is allowed; an assumed role's session
    policy bounds its role's policies (both must allow, either can deny: "Session policies",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session)."""
    if identity.kind == "root":
        return Decision.ALLOW
    decision = evaluate(identity.policies, action=INVOKE, resource=resource, context=context)
    if identity.session_policy is None or decision is Decision.EXPLICIT_DENY:
        return decision
    bound = evaluate([identity.session_policy], action=INVOKE, resource=resource, context=context)
    if bound is not Decision.ALLOW:
        return bound
    return decision


def authorize_invoke(identity: Identity, resource: str, context: Mapping[str, str]) -> None:
    """Refuse as API Gateway does when the caller may not invoke ``resource``: 403, type ACCESS_DENIED
    (x-amzn-ErrorType AccessDeniedException), "User: <caller ARN> is not authorized to perform:
    execute-api:Invoke on resource: <method ARN>", with " with an explicit deny" when a Deny matched ("How
    do I troubleshoot HTTP 403 errors from API Gateway?",
    https://repost.aws/knowledge-center/api-gateway-troubleshoot-403-forbidden)."""
    decision = decide(identity, resource, context)
    if decision is Decision.ALLOW:
        return
    message = f"User: {identity.arn} is not authorized to perform: {INVOKE} on resource: {resource}"
    if decision is Decision.EXPLICIT_DENY:
        message += " with an explicit deny"
    raise AccessRefused(403, ACCESS_DENIED, message)


def condition_context(
    identity: Identity,
    *,
    region: str,
    source_ip: str,
    user_agent: str | None,
    now: dt.datetime,
) -> dict[str, str]:
    """The global condition keys a request to API Gateway carries ("AWS global condition context keys",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html) that the
    local cloud knows. aws:SecureTransport is true: API Gateway serves HTTPS only. Keys it does not know
    (aws:SourceVpc, aws:PrincipalTag/..., aws:MultiFactorAuthPresent, ...) are absent, which conditions
    on them see as on AWS for a request without them."""
    context = {
        "aws:CurrentTime": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(int(now.timestamp())),
        "aws:SecureTransport": "true",
        "aws:SourceIp": source_ip,
        "aws:RequestedRegion": region,
        "aws:PrincipalArn": identity.principal_arn or identity.arn,
        "aws:PrincipalAccount": identity.account,
        "aws:PrincipalType": {"root": "Account", "user": "User", "assumed-role": "AssumedRole"}[
            identity.kind
        ],
        "aws:userid": identity.user_id,
    }
    if user_agent:
        context["aws:UserAgent"] = user_agent
    if identity.username:
        context["aws:username"] = identity.username
    return context


def _statements(policy: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    statements = policy.get("Statement", [])
    yield from [statements] if isinstance(statements, Mapping) else statements


def _listed(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]
) -> bool | None:
    if "NotAction" in statement:
        if any(_action_matches(p, action) for p in _listed(statement["NotAction"])):
            return False
    elif not any(_action_matches(p, action) for p in _listed(statement.get("Action", []))):
        return False
    if "NotResource" in statement:
        if any(arn_matches(p, resource) for p in _listed(statement["NotResource"])):
            return False
    elif not any(arn_matches(p, resource) for p in _listed(statement.get("Resource", []))):
        return False  # an identity policy statement without Resource is invalid: it grants nothing
    return conditions_hold(statement.get("Condition") or {}, context)


def _glob(pattern: str, *, segments: bool) -> str:
    """``*`` and ``?`` as IAM reads them; with ``segments`` (ARNs), a ``*`` inside an ARN segment stays in
    it, a ``*`` ending a segment can reach past the colons ("IAM JSON policy elements: Resource",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html)."""
    out = []
    for i, char in enumerate(pattern):
        if char == "*":
            last = i + 1 == len(pattern) or pattern[i + 1] == ":"
            out.append(".*" if not segments or last else "[^:]*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _action_matches(pattern: str, action: str) -> bool:
    """Actions are case-insensitive ("IAM JSON policy elements: Action",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html)."""
    return re.fullmatch(_glob(pattern, segments=False), action, re.IGNORECASE | re.DOTALL) is not None


def arn_matches(pattern: str, arn: str) -> bool:
    """Whether ``arn`` is one the policy's Resource element ``pattern`` names (case-sensitive)."""
    return re.fullmatch(_glob(pattern, segments=True), arn, re.DOTALL) is not None


# ------------------------------------------------------------------------------- conditions

_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "NumericNotEquals",
    "DateNotEquals",
    "NotIpAddress",
    "ArnNotEquals",
    "ArnNotLike",
}


class _Undecided(Exception):
    """A condition operator this module does not evaluate."""


def conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool | None:
    """Whether a statement's Condition block holds ("IAM JSON policy elements: Condition operators",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):
    every operator, every key under it, and for a key any of its values (none of them for a negated
    operator). A key absent from the request makes a condition false, a negated one true, one with
    ``...IfExists`` true; ``Null`` tests presence. ``ForAnyValue:``/``ForAllValues:`` apply to the
    single-valued keys here as AWS applies them to a one-element set. Evaluated operators: String*,
    Numeric*, Date*, Bool, IpAddress/NotIpAddress, Arn*, Null; any other (BinaryEquals) is undecided
    (None)."""
    lowered = {k.lower(): v for k, v in context.items()}
    try:
        for operator, block in conditions.items():
            for key, expected in (block or {}).items():
                if not _condition(str(operator), str(key).lower(), _listed(expected), lowered):
                    return False
    except _Undecided as exc:
        log.warning("IAM condition operator %s is not evaluated locally: the statement fails closed", exc)
        return None
    return True


def _condition(operator: str, key: str, expected: list[str], context: Mapping[str, str]) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists") and name != "IfExists"
    name = name.removesuffix("IfExists") if if_exists else name
    value = context.get(key)
    if name == "Null":
        return (value is None) == (expected[0].lower() == "true")
    if value is None:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or name in _NEGATED
    test = _OPERATORS.get(name.replace("Not", "", 1))  # StringNotLike: not StringLike
    if test is None:
        raise _Undecided(operator)
    matched = any(test(value, e) for e in expected)
    return not matched if name in _NEGATED else matched


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> float:
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ip(value: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _compare(parse: Callable[[str], float], op: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def test(value: str, expected: str) -> bool:
        try:
            return op(parse(value), parse(expected))
        except ValueError:
            return False

    return test


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda v, e: v == e,
    "StringEqualsIgnoreCase": lambda v, e: v.lower() == e.lower(),
    "StringLike": lambda v, e: re.fullmatch(_glob(e, segments=False), v, re.DOTALL) is not None,
    "NumericEquals": _compare(_number, lambda a, b: a == b),
    "NumericLessThan": _compare(_number, lambda a, b: a < b),
    "NumericLessThanEquals": _compare(_number, lambda a, b: a <= b),
    "NumericGreaterThan": _compare(_number, lambda a, b: a > b),
    "NumericGreaterThanEquals": _compare(_number, lambda a, b: a >= b),
    "DateEquals": _compare(_date, lambda a, b: a == b),
    "DateLessThan": _compare(_date, lambda a, b: a < b),
    "DateLessThanEquals": _compare(_date, lambda a, b: a <= b),
    "DateGreaterThan": _compare(_date, lambda a, b: a > b),
    "DateGreaterThanEquals": _compare(_date, lambda a, b: a >= b),
    "Bool": lambda v, e: v.lower() == e.lower(),
    "IpAddress": _ip,
    "ArnEquals": lambda v, e: arn_matches(e, v),
    "ArnLike": lambda v, e: arn_matches(e, v),
}


# ------------------------------------------------------------------------------------- SigV4


def verify_sigv4(
    *,
    verb: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    region: str,
    identities: IdentityLookup,
    now: dt.datetime | None = None,
) -> Identity:
    """The identity that signed the request (headers lower-cased), or API Gateway's refusal: no SigV4
    Authorization header is a 403 "Missing Authentication Token"; an unknown or inactive key, or a session
    token that is not its session's, "The security token included in the request is invalid."; an expired
    session "The security token included in the request is expired"; a signature off the body, the
    signed headers or the time, "The request signature we calculated does not match..."."""
    header = headers.get("authorization", "")
    match = _SIGV4.match(header)
    if match is None:
        raise AccessRefused(403, MISSING_AUTHENTICATION_TOKEN, "Missing Authentication Token")
    identity = identities(match.group("key"))
    if identity is None or not identity.active:
        raise AccessRefused(403, INVALID_SIGNATURE, _BAD_TOKEN)
    if headers.get("x-amz-security-token") != identity.session_token:
        raise AccessRefused(403, INVALID_SIGNATURE, _BAD_TOKEN)
    now = now or _utcnow()
    if identity.expires_at is not None and identity.expires_at <= now:
        raise AccessRefused(403, EXPIRED_TOKEN, "The security token included in the request is expired")
    if match.group("service") != "execute-api" or match.group("region") != region:
        raise AccessRefused(
            403,
            INVALID_SIGNATURE,
            f"Credential should be scoped to a valid region and service: {region}/execute-api",
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AccessRefused(403, INVALID_SIGNATURE, "X-Amz-Date is missing or malformed") from None
    if abs((now - signed_at).total_seconds()) > 300:
        raise AccessRefused(
            403, INVALID_SIGNATURE, "Signature expired: the request is more than 5 minutes old"
        )
    signed = match.group("headers").split(";")
    if "host" not in signed:
        # SigV4 requires host among the signed headers ("Create a canonical request for Signature
        # Version 4", https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html: "The
        # host header must be included as a signed header"); AWS refuses a signature without it.
        raise AccessRefused(
            403, INVALID_SIGNATURE, "'Host' must be a signed header: SignedHeaders must include host"
        )
    # The payload hash is computed from the body received, never read from the client's
    # X-Amz-Content-Sha256 (a signed header can carry the hash of another body): a body changed after
    # signing gives another canonical request, so the signature does not match.
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != hashlib.sha256(body).hexdigest():
        raise AccessRefused(403, INVALID_SIGNATURE, _MISMATCH)
    url = f"http://{headers.get('host', '')}{target}"
    request = AWSRequest(method=verb, url=url, data=body, headers={h: headers.get(h, "") for h in signed})
    credentials = Credentials(identity.access_key, identity.secret_key, identity.session_token)
    expected = _Verifier(credentials, "execute-api", region, amz_date, signed).signature_of(request)
    if not secrets.compare_digest(expected, match.group("signature")):
        raise AccessRefused(403, INVALID_SIGNATURE, _MISMATCH)
    return identity


class _Verifier(SigV4Auth):  # type: ignore[misc]
    """SigV4 of a received request, over exactly the headers the client signed, at the client's time."""

    def __init__(
        self, credentials: Credentials, service: str, region: str, amz_date: str, signed: list[str]
    ) -> None:
        super().__init__(credentials, service, region)
        self._amz_date = amz_date
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        for name in list(headers.keys()):
            if name.lower() not in self._signed:
                del headers[name]
        return headers

    def payload(self, request: AWSRequest) -> str:
        return hashlib.sha256(request.body or b"").hexdigest()

    def signature_of(self, request: AWSRequest) -> str:
        request.context["timestamp"] = self._amz_date
        if "X-Amz-Content-SHA256" in request.headers:  # signed: its value is checked against the body
            request.headers.replace_header("X-Amz-Content-SHA256", self.payload(request))
        canonical = self.canonical_request(request)
        return str(self.signature(self.string_to_sign(request, canonical), request))


# --------------------------------------------------------------------------------- throttling


class TokenBucket:
    """API Gateway's throttling: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass(frozen=True)
class Throttle:
    rate: float
    burst: int

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None) -> Throttle | None:
        """From a usage plan's ``{"rateLimit", "burstLimit"}``."""
        if not settings or "rateLimit" not in settings:
            return None
        return cls(float(settings["rateLimit"]), int(settings.get("burstLimit", 0)))


def method_setting_key(resource_path: str, http_method: str) -> str:
    """A stage's methodSettings key: the resource path with ``/`` as ``~1`` (``~`` as ``~0``), ``/``, the
    method: ``~1models~1iris~1predict/POST`` ("MethodSetting", https://docs.aws.amazon.com/apigateway/latest/api/API_MethodSetting.html,
    and the stage's ``/{resource_path}/{http_method}/...`` patch paths, "UpdateStage")."""
    return f"{resource_path.replace('~', '~0').replace('/', '~1')}/{http_method}"


class MethodThrottles:
    """A stage's method throttling: each method gets its own token bucket from its most specific method
    setting (``<path>/<METHOD>``, then ``<path>/*``, then the stage's ``*/*``), so a burst on one model's
    methods (or on one method) never takes another's tokens: the stage's default method throttling
    (``*/*``) and a method's own are per-method limits ("Throttle requests to your REST APIs for better
    throughput in API Gateway", "How throttling limit settings are applied in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html)."""

    def __init__(self, settings: Mapping[str, Mapping[str, Any]], *, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._buckets: dict[str, TokenBucket | None] = {}
        self._lock = threading.Lock()

    def setting(self, resource_path: str, http_method: str) -> Throttle | None:
        key = method_setting_key(resource_path, http_method)
        for candidate in (key, key.rsplit("/", 1)[0] + "/*", "*/*"):
            found = self._settings.get(candidate) or {}
            if "throttlingRateLimit" in found:
                return Throttle(
                    float(found["throttlingRateLimit"]), int(found.get("throttlingBurstLimit", 0))
                )
        return None

    def admit(self, resource_path: str, http_method: str) -> None:
        """Take a token of the method's bucket, or refuse with API Gateway's 429 THROTTLED."""
        key = method_setting_key(resource_path, http_method)
        with self._lock:
            if key not in self._buckets:
                throttle = self.setting(resource_path, http_method)
                self._buckets[key] = (
                    None
                    if throttle is None
                    else TokenBucket(throttle.rate, throttle.burst, clock=self._clock)
                )
            bucket = self._buckets[key]
        if bucket is not None and not bucket.take():
            raise AccessRefused(429, THROTTLED, "Too Many Requests")


# ------------------------------------------------------------------------ API keys, usage plans


@dataclass(frozen=True)
class Quota:
    """A usage plan's quota: ``limit`` requests per key per ``period`` (DAY, WEEK or MONTH), the period
    starting ``offset`` days in (a WEEK's offset 0 is Sunday, a MONTH's the 1st: "QuotaSettings",
    https://docs.aws.amazon.com/apigateway/latest/api/API_QuotaSettings.html)."""

    limit: int
    period: str
    offset: int = 0

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None) -> Quota | None:
        if not settings or "limit" not in settings:
            return None
        return cls(int(settings["limit"]), str(settings.get("period", "DAY")), int(settings.get("offset", 0)))

    def window(self, now: dt.datetime) -> dt.date:
        """The first day (UTC) of the period ``now`` falls in."""
        day = now.astimezone(dt.UTC).date()
        if self.period == "WEEK":
            sunday_based = (day.weekday() + 1) % 7  # Monday is 0 in Python, 1 in the quota's offset
            return day - dt.timedelta(days=(sunday_based - self.offset) % 7)
        if self.period == "MONTH":
            start = day.replace(day=min(self.offset + 1, 28))
            if start > day:
                previous = (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
                start = previous.replace(day=min(self.offset + 1, 28))
            return start
        return day


@dataclass(frozen=True)
class UsagePlan:
    id: str
    name: str
    throttle: Throttle | None
    quota: Quota | None
    #: (api id, stage) -> the plan's method throttles for that stage, by ``/<resource path>/<METHOD>``
    stages: Mapping[tuple[str, str], Mapping[str, Throttle]] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: Mapping[str, Any]) -> UsagePlan:
        stages: dict[tuple[str, str], dict[str, Throttle]] = {}
        for stage in plan.get("apiStages", []):
            throttles = {
                str(k): t
                for k, v in (stage.get("throttle") or {}).items()
                if (t := Throttle.of(v)) is not None
            }
            stages[(str(stage["apiId"]), str(stage["stage"]))] = throttles
        return cls(
            id=str(plan["id"]),
            name=str(plan.get("name") or plan["id"]),
            throttle=Throttle.of(plan.get("throttle")),
            quota=Quota.of(plan.get("quota")),
            stages=stages,
        )


@dataclass(frozen=True)
class Grant:
    """An API key that reaches an API stage, and the usage plan through which it does."""

    key_id: str
    key_value: str
    plan: UsagePlan
    api_id: str
    stage: str


def find_grant(apigateway: Any, key_value: str | None, *, api_id: str, stage: str) -> Grant:
    """The usage plan through which the key ``key_value`` (the ``x-api-key`` header) reaches the API
    stage, read from the local API Gateway. A missing, unknown or disabled key, or one in no plan listing
    this stage, is API Gateway's 403 ``{"message": "Forbidden"}`` (type INVALID_API_KEY): a key
    identifies a consumer, and a plan's API stages are what it may call ("Usage plans and API keys for
    REST APIs in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html). A key
    is in at most one plan per API stage (CreateUsagePlanKey refuses a second)."""
    forbidden = AccessRefused(403, INVALID_API_KEY, "Forbidden")
    if not key_value:
        raise forbidden
    key = None
    for page in apigateway.get_paginator("get_api_keys").paginate(includeValues=True):
        key = next((k for k in page.get("items", []) if k.get("value") == key_value), None)
        if key is not None:
            break
    if key is None or not key.get("enabled"):
        raise forbidden
    for page in apigateway.get_paginator("get_usage_plans").paginate(keyId=key["id"]):
        for described in page.get("items", []):
            plan = UsagePlan.of(described)
            if (api_id, stage) in plan.stages:
                return Grant(str(key["id"]), key_value, plan, api_id, stage)
    raise forbidden


class UsagePlanLimits:
    """The throttles and quotas of usage plans, per API key, kept across requests. A request is admitted
    when it is within the key's quota, the plan's throttle for the key (one bucket per key across the
    plan's stages: the plan's limit stays global to the key even with method throttles) and the plan's
    throttle of the method on this stage, if set; in API Gateway's order ("Throttle requests to your REST
    APIs for better throughput in API Gateway", "How throttling limit settings are applied",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html).
    Past the quota: 429 "Limit Exceeded" (QUOTA_EXCEEDED); past a throttle: 429 "Too Many Requests"
    (THROTTLED). A throttled request is not counted against the quota."""

    def __init__(self, *, clock: Clock = time.monotonic, now: Now = _utcnow) -> None:
        self._clock, self._now = clock, now
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}
        self._used: dict[tuple[str, str, dt.date], int] = {}
        self._lock = threading.Lock()

    def _bucket(self, key: tuple[str, ...], throttle: Throttle) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.rate, bucket.burst) != (throttle.rate, throttle.burst):
            bucket = self._buckets[key] = TokenBucket(throttle.rate, throttle.burst, clock=self._clock)
        return bucket

    def admit(self, grant: Grant, resource_path: str, http_method: str) -> None:
        plan = grant.plan
        with self._lock:
            counter = None
            if plan.quota is not None:
                counter = (plan.id, grant.key_id, plan.quota.window(self._now()))
                if self._used.get(counter, 0) >= plan.quota.limit:
                    raise AccessRefused(429, QUOTA_EXCEEDED, "Limit Exceeded")
            buckets = []
            if plan.throttle is not None:
                buckets.append(self._bucket((plan.id, grant.key_id), plan.throttle))
            method = f"{resource_path}/{http_method}"
            per_method = plan.stages.get((grant.api_id, grant.stage), {}).get(method)
            if per_method is not None:
                key = (plan.id, grant.key_id, grant.api_id, grant.stage, method)
                buckets.append(self._bucket(key, per_method))
            for bucket in buckets:
                if not bucket.take():
                    raise AccessRefused(429, THROTTLED, "Too Many Requests")
            if counter is not None:
                self._used[counter] = self._used.get(counter, 0) + 1

    def used(self, grant: Grant) -> int:
        """Requests counted against the key's quota in the current period."""
        quota = grant.plan.quota
        if quota is None:
            return 0
        with self._lock:
            return self._used.get((grant.plan.id, grant.key_id, quota.window(self._now())), 0)


# ------------------------------------------------------------------------------------- Cognito

Jwks = Callable[[str], Mapping[str, Any]]  # issuer -> its JSON Web Key Set


def issuer(region: str, pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A JWT's payload, unverified (to learn its issuer before its signature is checked)."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    try:
        padded = pieces[1] + "=" * (-len(pieces[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


class CognitoTokens:
    """A COGNITO_USER_POOLS authorizer: the token in the Authorization header (with or without
    ``Bearer``) must be a JWT signed by one of the authorizer's pools (its JWKS), issued by it and not
    expired; a method with authorization scopes takes an access token whose ``scope`` claim holds one of
    them, a method without scopes an ID token ("Integrate a REST API with an Amazon Cognito user pool",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-enable-cognito-user-pool.html:
    OAuth scopes on a method make it take access tokens carrying one of them, none make it take identity
    tokens; as an AWS answer puts it, "If there are no scopes defined the API Gateway Cognito Authorizer
    will require the ID Token",
    https://repost.aws/questions/QUrEQW0PtJTZm34jx0UrnLlw/need-access-token-as-header-in-cognito).
    Each refusal is 401 UNAUTHORIZED: "Unauthorized", or "The incoming token has expired"."""

    def __init__(self, jwks: Jwks, *, now: Clock = time.time) -> None:
        self._jwks = jwks
        self._now = now
        self._keys: dict[str, KeySet] = {}
        self._lock = threading.Lock()

    def _key_set(self, iss: str) -> KeySet:
        with self._lock:
            if iss not in self._keys:
                self._keys[iss] = KeySet.import_key_set(dict(self._jwks(iss)))  # type: ignore[arg-type]
            return self._keys[iss]

    def verify(
        self, authorization: str | None, *, issuers: Sequence[str], scopes: Sequence[str]
    ) -> dict[str, Any]:
        unauthorized = AccessRefused(401, UNAUTHORIZED, "Unauthorized")
        token = (authorization or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        peeked = unverified_claims(token)
        if peeked is None or peeked.get("iss") not in issuers:
            raise unauthorized
        try:
            decoded = jwt.decode(token, self._key_set(str(peeked["iss"])), algorithms=["RS256"])
        except (JoseError, ValueError, LookupError) as exc:
            log.info("Cognito token refused: %s", exc)
            raise unauthorized from None
        claims = dict(decoded.claims)
        if float(claims.get("exp", 0)) <= self._now():
            raise AccessRefused(401, UNAUTHORIZED, "The incoming token has expired")
        if scopes:
            granted = str(claims.get("scope", "")).split()
            if claims.get("token_use") != "access" or not set(granted) & set(scopes):
                raise unauthorized
        elif claims.get("token_use") != "id":
            raise unauthorized
        return claims


def http_jwks(endpoint_url: str, *, timeout: float = 10.0) -> Jwks:
    """The JWKS of a pool as the local AWS serves it (``<endpoint>/<pool id>/.well-known/jwks.json``,
    where Cognito serves ``https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json``)."""
    import urllib.request

    def fetch(iss: str) -> Mapping[str, Any]:
        pool_id = iss.rstrip("/").rsplit("/", 1)[-1]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{endpoint_url}/{pool_id}/.well-known/jwks.json", timeout=timeout) as response:
            keys: Mapping[str, Any] = json.loads(response.read())
        return keys

    return fetch


# ------------------------------------------------------------------------ Cognito token endpoint


@dataclass(frozen=True)
class TokenAnswer:
    status: int
    body: dict[str, Any]

    def encoded(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json;charset=UTF-8", "cache-control": "no-store"}
        return self.status, headers, json.dumps(self.body).encode()


def _oauth_error(error: str) -> TokenAnswer:
    """Cognito's token endpoint refusals: 400 with ``{"error": ...}`` ("The token issuer endpoint",
    https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html)."""
    return TokenAnswer(400, {"error": error})


def _client_auth(authorization: str | None, form: Mapping[str, str]) -> tuple[str, str] | None:
    """The client id and secret: HTTP Basic ``client_id:client_secret``, or client_secret_post."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            text = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        client_id, sep, secret = text.partition(":")
        return (client_id, secret) if sep else None
    if form.get("client_id") and form.get("client_secret"):
        return form["client_id"], form["client_secret"]
    return None


def find_client(cognito: Any, client_id: str) -> dict[str, Any] | None:
    """The app client ``client_id`` of any user pool of the local Cognito, described."""
    for page in cognito.get_paginator("list_user_pools").paginate(MaxResults=60):
        for pool in page.get("UserPools", []):
            try:
                described = cognito.describe_user_pool_client(UserPoolId=pool["Id"], ClientId=client_id)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
                continue
            client: dict[str, Any] = described["UserPoolClient"]
            return client
    return None


def client_credentials(
    *,
    cognito: Any,
    form: Mapping[str, str],
    authorization: str | None,
    region: str,
    signing_key: RSAKey,
    now: Clock = time.time,
) -> TokenAnswer:
    """Cognito's token endpoint (``POST /oauth2/token``) for the client credentials grant: the app client
    authenticates with its secret; it must allow the ``client_credentials`` flow; the scopes asked
    (space-separated; none asked: every custom scope the client is allowed) must all be among its
    AllowedOAuthScopes. The access token carries them in ``scope``, ``token_use`` access, ``client_id``
    and ``sub`` the client, signed with the pool's key (moto's), valid for the client's access token
    validity (default an hour). Refusals as Cognito's: ``unsupported_grant_type``, ``invalid_client``
    (unknown client, wrong or no secret), ``unauthorized_client`` (the flow is not allowed),
    ``invalid_scope``."""
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type" if form.get("grant_type") else "invalid_request")
    auth = _client_auth(authorization, form)
    if auth is None:
        return _oauth_error("invalid_client")
    client_id, secret = auth
    client = find_client(cognito, client_id)
    if (
        client is None
        or not client.get("ClientSecret")
        or not secrets.compare_digest(str(client["ClientSecret"]), secret)
    ):
        return _oauth_error("invalid_client")
    if "client_credentials" not in client.get("AllowedOAuthFlows", []) or not client.get(
        "AllowedOAuthFlowsUserPoolClient", False
    ):
        return _oauth_error("unauthorized_client")
    allowed = [str(s) for s in client.get("AllowedOAuthScopes", [])]
    asked = form.get("scope", "").split()
    if not asked:
        asked = [s for s in allowed if "/" in s]  # custom scopes: <resource server>/<scope>
    if not asked or any(s not in allowed for s in asked):
        return _oauth_error("invalid_scope")
    validity = _access_token_seconds(client)
    issued = int(now())
    claims = {
        "sub": client_id,
        "token_use": "access",
        "scope": " ".join(asked),
        "auth_time": issued,
        "iss": issuer(region, str(client["UserPoolId"])),
        "exp": issued + validity,
        "iat": issued,
        "version": 2,
        "jti": str(uuid.uuid4()),
        "client_id": client_id,
    }
    token = jwt.encode({"kid": signing_key.kid or "dummy", "alg": "RS256"}, claims, signing_key)
    return TokenAnswer(200, {"access_token": token, "expires_in": validity, "token_type": "Bearer"})


def _access_token_seconds(client: Mapping[str, Any]) -> int:
    value = client.get("AccessTokenValidity")
    if not value:
        return 3600
    unit = (client.get("TokenValidityUnits") or {}).get("AccessToken", "hours")
    return int(value) * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}.get(unit, 3600)
