"""AWS's quotas on what one synth produces, checked on the cloud assembly before AWS would refuse it.

CloudFormation refuses a template over its quotas only when the stack is created or updated, and API
Gateway refuses the 301st resource of a REST API halfway through a deployment. :func:`check_assembly`
counts the same things in the synthesized templates and returns one problem per crossed limit, each naming
the stack (or API), the limit, its documented value, the count and what to do; :func:`usage` gives the
headroom under every limit (``make bench`` reports it). Both read a ``cx_api.CloudAssembly``, a cdk.out
directory (``manifest.json`` and its ``*.template.json``) or a dict ``{stack name: template}``.

Per-account quotas (REST APIs, usage plans and API keys per Region) are counted over the whole assembly:
other stacks in the same account and Region count too, so crossing them here is certain to fail and
staying under them is not a promise. The quotas AWS raises on request (``adjustable``) can be raised in
:class:`Limits` once AWS has raised them for the account; the others cannot.

Exports: CloudFormation's quotas page names no number of exports per account and Region (read in the
user guide's source as of September 2023); what it documents is that export names are unique per account
and Region (CloudFormation template Outputs syntax), and that is what is checked.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from aws_cdk import cx_api

CFN_QUOTAS = (
    "Understand CloudFormation quotas",
    "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html",
)
CFN_OUTPUTS = (
    "CloudFormation template Outputs syntax",
    "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/outputs-section-structure.html",
)
REST_API_QUOTAS = (
    "Quotas for configuring and running a REST API in API Gateway",
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html",
)
COGNITO_RESOURCE_SERVER = (
    "CreateResourceServer (Amazon Cognito user pools API reference)",
    "https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateResourceServer.html",
)

ASSEMBLY = "(assembly)"  # the stack of a Usage counted over every stack of the synth


class LimitsError(ValueError):
    """A limit set to a value AWS does not allow (unknown, not positive, or raised where AWS raises none)."""


@dataclass(frozen=True)
class Quota:
    """How one limit is described: what it counts (``{count}``, ``{subject}``), its name and scope in
    AWS's words, the page that documents it, whether AWS raises it on request, and what to do."""

    counted: str
    label: str
    service: str
    doc: tuple[str, str]
    adjustable: bool
    advice: str


QUOTAS: dict[str, Quota] = {
    "resources_per_template": Quota(
        "{count:,} resources",
        "resources per template",
        "CloudFormation",
        CFN_QUOTAS,
        False,
        "Move resources into another stack: the kit gives each model its own stack, so a model stack this "
        "full has too many variants, alarms or routes, and a full shared stack has too many per-model parts.",
    ),
    "outputs_per_template": Quota(
        "{count:,} outputs",
        "outputs per template",
        "CloudFormation",
        CFN_QUOTAS,
        False,
        "Drop outputs nobody reads (CDK adds one per cross-stack reference), or publish values as SSM "
        "parameters.",
    ),
    "parameters_per_template": Quota(
        "{count:,} parameters",
        "parameters per template",
        "CloudFormation",
        CFN_QUOTAS,
        False,
        "Pass values as context or SSM parameters rather than CloudFormation parameters (a legacy stack "
        "synthesizer adds parameters for every asset).",
    ),
    "mappings_per_template": Quota(
        "{count:,} mappings",
        "mappings per template",
        "CloudFormation",
        CFN_QUOTAS,
        False,
        "Fold mappings together, or split the stack.",
    ),
    "template_bytes": Quota(
        "a template of {count:,} bytes",
        "bytes of template body in Amazon S3 (1 MB; CDK uploads templates as assets)",
        "CloudFormation",
        CFN_QUOTAS,
        False,
        "Split the stack; inline policies, code and long descriptions are what make templates big.",
    ),
    "logical_id_chars": Quota(
        "a logical id of {count:,} characters ({subject})",
        "characters per resource, output, parameter or mapping name",
        "CloudFormation",
        CFN_QUOTAS,
        False,
        "Shorten the construct ids (model and variant names) the logical id is made of.",
    ),
    "resources_per_api": Quota(
        "{count:,} resources, the root included",
        "resources per REST API",
        "API Gateway",
        REST_API_QUOTAS,
        True,
        "Spread the routes over more REST APIs (the kit gives each model its own), or have AWS raise the "
        "quota for this API and raise limits.resources_per_api to match.",
    ),
    "authorizers_per_api": Quota(
        "{count:,} authorizers",
        "authorizers per REST API",
        "API Gateway",
        REST_API_QUOTAS,
        True,
        "Share one authorizer between the API's methods, or have AWS Support raise the quota and raise "
        "limits.authorizers_per_api to match.",
    ),
    "stages_per_api": Quota(
        "{count:,} stages",
        "stages per REST API",
        "API Gateway",
        REST_API_QUOTAS,
        True,
        "Give each stage its own deployment (stack and API), or have AWS raise the quota and raise "
        "limits.stages_per_api to match.",
    ),
    "regional_apis_per_region": Quota(
        "{count:,} regional REST APIs",
        "regional APIs per Region (not adjustable)",
        "API Gateway",
        REST_API_QUOTAS,
        False,
        "AWS does not raise this quota: deploy fewer models per account and Region (another Region or "
        "account), counting the APIs of every other deployment there too.",
    ),
    "edge_apis_per_region": Quota(
        "{count:,} edge-optimized REST APIs",
        "edge-optimized APIs per Region (not adjustable)",
        "API Gateway",
        REST_API_QUOTAS,
        False,
        "AWS does not raise this quota: use REGIONAL endpoints (600 per Region), or deploy fewer APIs per "
        "account and Region.",
    ),
    "private_apis_per_region": Quota(
        "{count:,} private REST APIs",
        "private APIs per account per Region (not adjustable)",
        "API Gateway",
        REST_API_QUOTAS,
        False,
        "AWS does not raise this quota: deploy fewer private APIs per account and Region.",
    ),
    "usage_plans_per_region": Quota(
        "{count:,} usage plans",
        "usage plans per account per Region",
        "API Gateway",
        REST_API_QUOTAS,
        True,
        "Fewer api_key consumers (one usage plan each; other deployments in the account count too), or "
        "have AWS raise the quota and raise limits.usage_plans_per_region to match.",
    ),
    "api_keys_per_region": Quota(
        "{count:,} API keys",
        "API keys per account per Region (not adjustable)",
        "API Gateway",
        REST_API_QUOTAS,
        False,
        "AWS does not raise this quota: fewer api_key consumers, or IAM or Cognito for these callers.",
    ),
    "usage_plans_per_api_key": Quota(
        "{count:,} usage plans on one API key",
        "usage plans per API key",
        "API Gateway",
        REST_API_QUOTAS,
        True,
        "Give the consumer one usage plan that lists every stage it may call, or have AWS raise the "
        "quota and raise limits.usage_plans_per_api_key to match.",
    ),
    "scopes_per_resource_server": Quota(
        "{count:,} custom scopes",
        "custom scopes per resource server",
        "Amazon Cognito",
        COGNITO_RESOURCE_SERVER,
        False,
        "AWS does not raise this quota: spread the models' scopes over more than one resource server.",
    ),
}


@dataclass(frozen=True)
class Limits:
    """The quotas counted, at their documented defaults. A quota AWS raises on request (see ``QUOTAS``)
    can be raised here, ``Limits(resources_per_api=600)`` or ``Limits().override({...})``, once AWS has
    raised it for the account; any can be lowered; raising one AWS never raises is refused."""

    # "Understand CloudFormation quotas",
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html:
    # Resources 500, Outputs 200, Parameters 200, Mappings 200 per template; "Template body size in an
    # Amazon S3 object" 1 MB (CDK's default synthesizer uploads each template as a file asset and passes
    # its S3 URL, so the file in cdk.out is what counts); resource, output, parameter and mapping names
    # 255 characters each.
    resources_per_template: int = 500
    outputs_per_template: int = 200
    parameters_per_template: int = 200
    mappings_per_template: int = 200
    template_bytes: int = 1_000_000
    logical_id_chars: int = 255
    # "Quotas for configuring and running a REST API in API Gateway",
    # https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html:
    # Resources per API 300 (adjustable), Authorizers per API 10 (adjustable through AWS Support), Stages
    # per API 10 (adjustable); Regional APIs per Region 600, Edge-optimized APIs per Region 120, Private
    # APIs per account per Region 600 (none adjustable); Usage plans per account per Region 300
    # (adjustable); API keys per account per Region 10,000 (not adjustable); Usage plans per API key 10
    # (adjustable).
    resources_per_api: int = 300
    authorizers_per_api: int = 10
    stages_per_api: int = 10
    regional_apis_per_region: int = 600
    edge_apis_per_region: int = 120
    private_apis_per_region: int = 600
    usage_plans_per_region: int = 300
    api_keys_per_region: int = 10_000
    usage_plans_per_api_key: int = 10
    # CreateResourceServer (Amazon Cognito user pools API reference),
    # https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateResourceServer.html:
    # "Scopes ... Array Members: Maximum number of 100 items".
    scopes_per_resource_server: int = 100

    def __post_init__(self) -> None:
        problems = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"limits.{field.name}: {value!r} is not a positive whole number")
            elif value > field.default and not QUOTAS[field.name].adjustable:  # type: ignore[operator]
                title, url = QUOTAS[field.name].doc
                problems.append(
                    f"limits.{field.name}: {value:,} is over AWS's {field.default:,} "
                    f'{QUOTAS[field.name].label}, which AWS does not raise ("{title}", {url})'
                )
        if problems:
            raise LimitsError("\n".join(problems))

    def override(self, values: Mapping[str, int]) -> Limits:
        """These limits with some values changed (a config's ``limits:`` section, say)."""
        unknown = sorted(set(values) - set(QUOTAS))
        if unknown:
            raise LimitsError(
                "\n".join(f"limits.{name}: no such limit (known: {', '.join(QUOTAS)})" for name in unknown)
            )
        return dataclasses.replace(self, **values)


@dataclass(frozen=True)
class Usage:
    """One count against one limit: in which stack (``ASSEMBLY`` for a count over every stack), of what
    (``subject``: the API, key, resource server or logical id, where the limit is per one of them)."""

    stack: str
    limit: str
    count: int
    value: int
    fraction: float
    subject: str = ""


@dataclass(frozen=True)
class _Stack:
    name: str
    template: dict[str, Any]
    size: int


# What the checks read: a synthesized cloud assembly, a cdk.out directory, or templates by stack name.
Assembly: TypeAlias = "cx_api.CloudAssembly | Path | str | Mapping[str, Mapping[str, Any]]"


def check_assembly(assembly: Assembly, limits: Limits | None = None) -> list[str]:
    """Every limit the assembly crosses, one message each (empty when it is within all of them)."""
    limits = limits or Limits()
    stacks = _stacks(assembly)
    crossed = sorted(
        (u for u in _usage(stacks, limits) if u.count > u.value), key=lambda u: (u.stack, u.limit, u.subject)
    )
    return [_message(u) for u in crossed] + _duplicate_exports(stacks)


def usage(assembly: Assembly, limits: Limits | None = None) -> list[Usage]:
    """Each stack's (and API's, and the whole assembly's) count against each limit, fullest first."""
    return sorted(
        _usage(_stacks(assembly), limits or Limits()), key=lambda u: (-u.fraction, u.stack, u.limit)
    )


def _message(u: Usage) -> str:
    quota = QUOTAS[u.limit]
    title, url = quota.doc
    if u.stack == ASSEMBLY:
        where = "this synth's stacks together (other stacks in the account and Region count too)"
    elif u.limit in {"logical_id_chars", "template_bytes"} or u.limit.endswith("_per_template"):
        where = f"stack {u.stack}"
    else:
        where = f"{_SUBJECT_KIND.get(u.limit, '')}{u.subject} in stack {u.stack}"
    counted = quota.counted.format(count=u.count, subject=u.subject)
    return (
        f"{where}: {counted}, over {quota.service}'s limit of {u.value:,} {quota.label} "
        f'("{title}", {url}). {quota.advice}'
    )


_SUBJECT_KIND = {
    "resources_per_api": "REST API ",
    "authorizers_per_api": "REST API ",
    "stages_per_api": "REST API ",
    "usage_plans_per_api_key": "API key ",
    "scopes_per_resource_server": "resource server ",
}


# --- reading the assembly ---------------------------------------------------------------------------


def _stacks(assembly: Any) -> list[_Stack]:
    if isinstance(assembly, Mapping):
        return [
            _Stack(name, dict(template), len(json.dumps(template, indent=1).encode()))
            for name, template in assembly.items()
        ]
    if isinstance(assembly, str | Path):
        return list(_from_directory(Path(assembly)))
    directory = getattr(assembly, "directory", None)  # a cx_api.CloudAssembly: read its files
    if isinstance(directory, str):
        return list(_from_directory(Path(directory)))
    raise TypeError(f"not a cloud assembly, cdk.out directory or {{stack: template}} dict: {assembly!r}")


def _from_directory(directory: Path) -> Iterator[_Stack]:
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():  # templates without a manifest: named after their files
        for path in sorted(directory.glob("*.template.json")):
            yield _Stack(
                path.name.removesuffix(".template.json"), json.loads(path.read_text()), path.stat().st_size
            )
        return
    manifest = json.loads(manifest_path.read_text())
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        properties = artifact.get("properties", {})
        if artifact.get("type") == "aws:cloudformation:stack":
            path = directory / properties["templateFile"]
            name = properties.get("stackName", artifact_id)
            yield _Stack(name, json.loads(path.read_text()), path.stat().st_size)
        elif artifact.get("type") == "cdk:cloud-assembly":  # a Stage: its own nested assembly
            yield from _from_directory(directory / properties["directoryName"])


# --- counting --------------------------------------------------------------------------------------


def _usage(stacks: list[_Stack], limits: Limits) -> list[Usage]:
    tally = _Tally(limits)
    for stack in stacks:
        tally.template(stack)
        for logical_id, resource in (stack.template.get("Resources") or {}).items():
            if isinstance(resource, Mapping):
                tally.resource(stack, logical_id, resource)
    return tally.finish() if stacks else []


class _Tally:
    """The counts of one assembly, stack by stack, then per API, per API key and over the assembly."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.out: list[Usage] = []
        self.apis: dict[str, _Api] = {}
        self.plans_per_key: dict[str, int] = defaultdict(int)
        self.key_names: dict[str, tuple[str, str]] = {}  # key -> (its name, the stack that names it)
        self.totals = dict.fromkeys(
            (
                "regional_apis_per_region",
                "edge_apis_per_region",
                "private_apis_per_region",
                "usage_plans_per_region",
                "api_keys_per_region",
            ),
            0,
        )

    def add(self, stack: str, limit: str, count: int, subject: str = "") -> None:
        value = getattr(self.limits, limit)
        self.out.append(Usage(stack, limit, count, value, round(count / value, 4), subject))

    def template(self, stack: _Stack) -> None:
        template = stack.template
        for section, limit in _SECTIONS.items():
            self.add(stack.name, limit, len(template.get(section) or {}))
        self.add(stack.name, "template_bytes", stack.size)
        names = [name for section in _SECTIONS for name in template.get(section) or {}]
        if names:
            longest = max(names, key=len)
            shown = longest if len(longest) <= 60 else longest[:57] + "..."
            self.add(stack.name, "logical_id_chars", len(longest), shown)

    def resource(self, stack: _Stack, logical_id: str, resource: Mapping[str, Any]) -> None:
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind == "AWS::ApiGateway::RestApi":
            api = self.apis.setdefault(_ref_key(stack, {"Ref": logical_id}), _Api(stack.name, logical_id))
            api.resources += _body_resources(properties.get("Body"))
            self.totals[f"{_endpoint_type(properties).lower()}_apis_per_region"] += 1
        elif kind in _PER_API and "RestApiId" in properties:
            if kind == "AWS::ApiGateway::Deployment" and "StageName" not in properties:
                return
            rest_api = properties["RestApiId"]
            api = self.apis.setdefault(_ref_key(stack, rest_api), _Api(stack.name, _describe(rest_api)))
            setattr(api, _PER_API[kind], getattr(api, _PER_API[kind]) + 1)
        elif kind == "AWS::ApiGateway::UsagePlan":
            self.totals["usage_plans_per_region"] += 1
        elif kind == "AWS::ApiGateway::ApiKey":
            self.totals["api_keys_per_region"] += 1
            self.key_names.setdefault(_ref_key(stack, {"Ref": logical_id}), (logical_id, stack.name))
        elif kind == "AWS::ApiGateway::UsagePlanKey" and "KeyId" in properties:
            key = _ref_key(stack, properties["KeyId"])
            self.plans_per_key[key] += 1
            self.key_names.setdefault(key, (_describe(properties["KeyId"]), stack.name))
        elif kind == "AWS::Cognito::UserPoolResourceServer" and isinstance(properties.get("Scopes"), list):
            self.add(stack.name, "scopes_per_resource_server", len(properties["Scopes"]), logical_id)

    def finish(self) -> list[Usage]:
        for api in self.apis.values():
            self.add(api.stack, "resources_per_api", api.resources + 1, api.name)  # + the root, "/"
            self.add(api.stack, "authorizers_per_api", api.authorizers, api.name)
            self.add(api.stack, "stages_per_api", api.stages, api.name)
        for key, plans in self.plans_per_key.items():
            name, stack = self.key_names[key]
            self.add(stack, "usage_plans_per_api_key", plans, name)
        for limit, count in self.totals.items():
            self.add(ASSEMBLY, limit, count)
        return self.out


_SECTIONS = {
    "Resources": "resources_per_template",
    "Outputs": "outputs_per_template",
    "Parameters": "parameters_per_template",
    "Mappings": "mappings_per_template",
}


@dataclass
class _Api:
    stack: str
    name: str
    resources: int = 0
    authorizers: int = 0
    stages: int = 0


# The API Gateway types counted per REST API (their RestApiId), and what each adds to. A Deployment with
# a StageName creates that stage (AWS::ApiGateway::Deployment, StageName).
_PER_API = {
    "AWS::ApiGateway::Resource": "resources",
    "AWS::ApiGateway::Authorizer": "authorizers",
    "AWS::ApiGateway::Stage": "stages",
    "AWS::ApiGateway::Deployment": "stages",
}


def _ref_key(stack: _Stack, value: Any) -> str:
    """One REST API (or API key) however it is referred to: a Ref is to a resource of the same stack; an
    imported value is the same one in every stack that imports it; any other value is compared as is."""
    if isinstance(value, Mapping) and set(value) == {"Ref"}:
        return f"ref\0{stack.name}\0{value['Ref']}"
    if isinstance(value, Mapping) and set(value) == {"Fn::ImportValue"}:
        return f"import\0{json.dumps(value['Fn::ImportValue'], sort_keys=True)}"
    return f"value\0{json.dumps(value, sort_keys=True)}"


def _describe(value: Any) -> str:
    if isinstance(value, Mapping) and set(value) == {"Ref"}:
        return str(value["Ref"])
    if (
        isinstance(value, Mapping)
        and set(value) == {"Fn::ImportValue"}
        and isinstance(value["Fn::ImportValue"], str)
    ):
        return f"(imported {value['Fn::ImportValue']})"
    return json.dumps(value, sort_keys=True)[:80]


def _endpoint_type(properties: Mapping[str, Any]) -> str:
    """REGIONAL, EDGE or PRIVATE; EDGE when unset: "This is the default endpoint type for API Gateway REST
    APIs" ("API endpoint types for REST APIs in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-endpoint-types.html)."""
    configuration = properties.get("EndpointConfiguration")
    types = configuration.get("Types") if isinstance(configuration, Mapping) else None
    if isinstance(types, list) and types and types[0] in {"REGIONAL", "EDGE", "PRIVATE"}:
        return str(types[0])
    return "EDGE"


def _body_resources(body: Any) -> int:
    """The resources an inline OpenAPI body creates (every path and each of its parents, the root aside)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("paths"), Mapping):
        return 0
    prefixes: set[str] = set()
    for path in body["paths"]:
        parts = [p for p in str(path).split("/") if p]
        prefixes.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return len(prefixes)


def _duplicate_exports(stacks: list[_Stack]) -> list[str]:
    """Export names are unique per account and Region ("For each AWS account, Export names must be unique
    within a region"): two stacks of one synth exporting the same name cannot both deploy."""
    seen: dict[str, list[str]] = defaultdict(list)
    for stack in stacks:
        for output_id, output in (stack.template.get("Outputs") or {}).items():
            name = (output.get("Export") or {}).get("Name") if isinstance(output, Mapping) else None
            if isinstance(name, str):
                seen[name].append(f"{stack.name} ({output_id})")
    title, url = CFN_OUTPUTS
    return [
        f"export {name!r} is declared by {len(where)} outputs: {', '.join(where)}; CloudFormation requires "
        f'export names unique per account and Region ("{title}", {url}). Rename all but one of them.'
        for name, where in sorted(seen.items())
        if len(where) > 1
    ]
