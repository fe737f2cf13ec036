"""The one config file (``models.yaml``): every model the kit deploys, as typed, frozen objects.

``load_config`` reports every problem at once, each with its path, for example::

    models.yaml: 2 problems
      - models[1].runtime: expected 'lambda' or 'sagemaker', got 'gpu'
      - models[0].artifact: file not found: models/iris/v3/model.onnx

Besides the structure, it checks each artifact with the same code the runtime uses (so a schema
override naming a missing input, or labels that do not match the classifier's outputs, fail here
and not after a deploy).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mdk_runtime.instances import GRAVITON_FAMILIES, instance_family

DEFAULT_CONFIG = "models.yaml"
NAME_PATTERN = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Dtype = Literal[
    "float32", "float64", "float16", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "string",
]  # fmt: skip


class ConfigError(Exception):
    """The config file is invalid; ``problems`` lists each one with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  - {p}" for p in problems))


def _dns_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(
            "expected a DNS-safe name (lowercase letters, digits and hyphens, starting with a letter, "
            f"not ending with a hyphen, at most 32 characters), got {value!r}"
        )
    return value


def _version(value: str) -> str:
    if not VERSION_PATTERN.match(value):
        raise ValueError(f"expected letters, digits, '.', '_' or '-' (at most 64), got {value!r}")
    return value


def _shape(value: list[Any]) -> list[int | str | None]:
    for i, dim in enumerate(value):
        ok = (
            dim is None
            or isinstance(dim, str)
            or (isinstance(dim, int) and not isinstance(dim, bool) and dim > 0)
        )
        if not ok or dim == "":
            raise ValueError(f"[{i}]: expected a positive size, a dimension name or null, got {dim!r}")
    return value


DnsName = Annotated[str, AfterValidator(_dns_name)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class InputSchema(_Frozen):
    """Overrides for one graph input (keyed by its ONNX name)."""

    alias: str | None = Field(None, min_length=1, max_length=128, description="the name requests use")
    dtype: Dtype | None = Field(
        None, description="what clients send; must cast safely to the graph's type (uint8 -> float32)"
    )
    shape: Annotated[list[Any], AfterValidator(_shape)] | None = Field(
        None, description="narrows the graph's shape; null or a name for dynamic sizes"
    )


class ClassifierSchema(_Frozen):
    label_output: str | None = None
    probabilities_output: str


class SchemaOverrides(_Frozen):
    """What the graph does not say, or says too loosely."""

    inputs: dict[str, InputSchema] = Field(default_factory=dict)
    labels: list[str] | None = Field(None, min_length=1, description="class names, index = class id")
    batched: bool | None = Field(None, description="false: the model has no batch dimension")
    classifier: ClassifierSchema | None = None
    max_instances: int = Field(10_000, ge=1, le=1_000_000)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            seen: set[str] = set()
            for label in value:
                if label in seen:
                    raise ValueError(f"duplicate label {label!r}")
                seen.add(label)
        return value


class LambdaSettings(_Frozen):
    """How a ``lambda`` model's function runs."""

    memory_mb: int = Field(2048, ge=128, le=10_240)
    timeout_s: int = Field(29, ge=1, le=900)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    reserved_concurrency: int | None = Field(None, ge=0)
    provisioned_concurrency: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _concurrency(self) -> LambdaSettings:
        reserved, provisioned = self.reserved_concurrency, self.provisioned_concurrency
        if reserved is not None and provisioned is not None and provisioned > reserved:
            raise ValueError(
                f"provisioned_concurrency ({provisioned}) cannot exceed reserved_concurrency ({reserved})"
            )
        return self


INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
VARIANT_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
PRIMARY_VARIANT = "primary"
# The instance-family rules (local NVMe storage, Graviton, GPU) live in mdk_runtime.instances: the batch
# trigger, a zip function, gets that package as its layer, so endpoint configs and transform jobs decide
# the volume key from one list.


class SageMakerVariant(_Frozen):
    """Another variant on the endpoint: a second production variant (weighted traffic) or the shadow."""

    name: Annotated[str, Field(pattern=VARIANT_NAME, max_length=63)]
    artifact: Path | None = Field(None, description="its own model file (the model's artifact if unset)")
    instance_type: str | None = Field(None, pattern=INSTANCE_TYPE)
    initial_instance_count: int = Field(1, ge=1, le=100)
    weight: float = Field(
        1.0, gt=0, le=1000, description="traffic weight; for the shadow, its sampling weight"
    )

    @field_validator("artifact", mode="after")
    @classmethod
    def _artifact_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = value if value.is_absolute() else _base_dir(info) / value
        if value.suffix != ".onnx":
            raise ValueError(f"expected an .onnx file, got {str(value)!r}")
        if not path.is_file():
            raise ValueError(f"file not found: {value}")
        return path.resolve()


class VpcSettings(_Frozen):
    subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")]] = Field(
        min_length=1, max_length=16
    )
    security_group_ids: list[Annotated[str, Field(pattern=r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")]] = Field(
        min_length=1, max_length=5
    )


class SageMakerSettings(_Frozen):
    """How a ``sagemaker`` model's endpoint runs. Rollouts use the model's ``rollout`` settings."""

    instance_type: str = Field("ml.g4dn.xlarge", pattern=INSTANCE_TYPE)
    initial_instance_count: int = Field(1, ge=1, le=100)
    weight: float = Field(1.0, gt=0, le=1000, description="the primary variant's traffic weight")
    variants: list[SageMakerVariant] = Field(default_factory=list, max_length=9)
    shadow: SageMakerVariant | None = None
    min_instances: int = Field(1, ge=1, le=100, description="autoscaling floor")
    max_instances: int = Field(4, ge=1, le=100, description="autoscaling ceiling")
    target_invocations_per_instance: int = Field(200, ge=1, le=100_000, description="per minute")
    max_batch_size: int = Field(32, ge=1, le=65_536, description="dynamic batching: rows per inference")
    max_batch_delay_ms: int = Field(2, ge=0, le=1000, description="dynamic batching: wait for more")
    data_capture_percent: int = Field(0, ge=0, le=100, description="requests and answers captured to S3")
    baking_minutes: int = Field(10, ge=0, le=60, description="watch the new fleet before the old one goes")
    # The kit's container needs no network: SageMaker mounts the model, captures data and ships logs and
    # metrics itself (CreateModel's EnableNetworkIsolation). Turn off only for a container that calls out.
    network_isolation: bool = True
    vpc: VpcSettings | None = None

    @model_validator(mode="after")
    def _topology(self) -> SageMakerSettings:
        problems = []
        if self.shadow is not None and self.variants:
            problems.append(
                "a shadow variant needs exactly one production variant (AWS rejects anything else at deploy "
                "time): remove 'variants' or 'shadow'"
            )
        names = (
            [PRIMARY_VARIANT] + [v.name for v in self.variants] + ([self.shadow.name] if self.shadow else [])
        )
        if len(set(names)) != len(names):
            problems.append(
                f"variant names must be unique (and not {PRIMARY_VARIANT!r}), got {', '.join(names)}"
            )
        if not self.min_instances <= self.initial_instance_count <= self.max_instances:
            problems.append(
                f"expected min_instances <= initial_instance_count <= max_instances, got "
                f"{self.min_instances} <= {self.initial_instance_count} <= {self.max_instances}"
            )
        types = [self.instance_type] + [
            v.instance_type
            for v in [*self.variants, *([self.shadow] if self.shadow else [])]
            if v.instance_type
        ]
        graviton = [t for t in types if instance_family(t) in GRAVITON_FAMILIES]
        if graviton:
            problems.append(
                f"Graviton (arm64) instances are not supported by the serving image: {graviton[0]}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RolloutSettings(_Frozen):
    """How a new model version takes traffic, and what rolls it back.

    ``canary``: ``percent`` of the traffic for ``interval_minutes``, then all of it. ``linear``:
    ``percent`` more every ``interval_minutes``. ``all_at_once``: no shifting (the pre-traffic check
    still runs). The alarms watch the new version only and roll it back when breached.
    """

    strategy: Literal["canary", "linear", "all_at_once"] = "canary"
    percent: int = Field(10, ge=1, le=99, description="traffic per step")
    interval_minutes: int = Field(5, ge=1, le=2880)
    max_errors: int = Field(
        1, ge=1, le=1000, description="errors of the new version in one minute that roll it back"
    )
    p99_latency_ms: int = Field(
        1000, ge=10, le=900_000, description="p99 duration of the new version that rolls it back"
    )


class Throttle(_Frozen):
    """A token bucket: the steady rate and the burst above it (API Gateway's throttling, "Throttle
    requests to your REST APIs for better throughput in API Gateway",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html). The
    bounds are the account's default quota per Region (10,000 requests per second, a 5,000 burst)."""

    rate: int = Field(ge=1, le=10_000, description="steady requests per second")
    burst: int = Field(ge=1, le=5_000, description="requests at once above the rate")


# AWS quotas the access settings are checked against (each message names its page).
USAGE_PLANS_PER_REGION = 300  # "Amazon API Gateway quotas": usage plans per account per Region
API_GATEWAY_QUOTAS = "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
SCOPES_PER_RESOURCE_SERVER = 100  # CreateResourceServer: Scopes, at most 100 items
COGNITO_API = "https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference"
RESOURCE_SERVER_API = f"{COGNITO_API}/API_CreateResourceServer.html"
SCOPES_PER_APP_CLIENT = 50  # CreateUserPoolClient: AllowedOAuthScopes, at most 50 items
APP_CLIENT_API = f"{COGNITO_API}/API_CreateUserPoolClient.html"
DEFAULT_CONSUMER = "default"


class ConsumerSettings(_Frozen):
    """One caller of the API and the models it may call: with ``auth: api_key`` an API key and a usage
    plan of its own, with ``auth: cognito`` an app client (client credentials) with its models' scopes."""

    name: DnsName
    models: list[str] = Field(min_length=1, description="the models it may call, by name")
    rate: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="api_key: requests per second to each model (default api.throttle_rate)",
    )
    burst: int | None = Field(None, ge=1, le=5_000, description="api_key: default api.throttle_burst")
    quota_per_day: int | None = Field(
        None, ge=1, description="api_key: requests per day, all its models (default api.quota_per_day)"
    )

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for j, name in enumerate(value):
            if name in seen:
                raise ValueError(f"[{j}]: {name!r} is listed twice")
            seen.add(name)
        return value


@dataclass(frozen=True)
class Consumer:
    """A consumer as the stacks build it: ``api.consumers`` with the API's defaults filled in, or, with
    ``auth: api_key`` and no consumers, the one default consumer that reaches every model."""

    name: str
    models: tuple[str, ...]
    rate: int
    burst: int
    quota_per_day: int | None


class ApiSettings(_Frozen):
    """Every model's REST API: how callers authenticate, the throttle, the consumers."""

    auth: Literal["iam", "api_key", "cognito"] = Field(
        "iam", description="iam: SigV4-signed requests; api_key: x-api-key with a usage plan; cognito: JWTs"
    )
    cognito_user_pool_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:cognito-idp:[a-z0-9-]+:\d{12}:userpool/[\w-]+$"
    )
    throttle_rate: int = Field(
        100, ge=1, le=10_000, description="steady requests per second, all clients (per model: its throttle)"
    )
    throttle_burst: int = Field(200, ge=1, le=5_000)
    quota_per_day: int | None = Field(None, ge=1, description="api_key: requests per key per day")
    waf: bool = Field(False, description="a WAF web ACL (managed rules sized for ML payloads, rate limit)")
    waf_rate_limit: int = Field(2000, ge=100, le=2_000_000_000, description="requests per 5 min per IP")
    consumers: list[ConsumerSettings] = Field(
        default_factory=list,
        description="api_key: a key and usage plan each; cognito: an app client each (not with iam)",
    )

    @model_validator(mode="after")
    def _cognito(self) -> ApiSettings:
        if self.auth == "cognito" and self.cognito_user_pool_arn is None:
            raise ValueError("auth is 'cognito': cognito_user_pool_arn is required")
        if self.auth != "cognito" and self.cognito_user_pool_arn is not None:
            raise ValueError(f"cognito_user_pool_arn given, but auth is {self.auth!r}")
        return self

    def stage_throttle(self, model: ModelConfig | None = None) -> Throttle:
        """The stage throttle of ``model``'s API, all its callers together: the model's own, or the API's."""
        if model is not None and model.throttle is not None:
            return model.throttle
        return Throttle(rate=self.throttle_rate, burst=self.throttle_burst)

    @model_validator(mode="after")
    def _consumers(self) -> ApiSettings:
        if not self.consumers:
            return self
        if self.auth == "iam":
            raise ValueError(
                "consumers: not with auth 'iam': IAM authorizes the caller's own identity, so attach the "
                "per-model managed policies the stacks emit (<project>-<stage>-invoke-<model>) to your "
                "roles and users instead"
            )
        problems = []
        if self.auth == "api_key" and len(self.consumers) > USAGE_PLANS_PER_REGION:
            problems.append(
                f"consumers: at most {USAGE_PLANS_PER_REGION} with auth 'api_key' (each is a usage plan, and "
                f"API Gateway allows {USAGE_PLANS_PER_REGION} usage plans per account per Region, "
                f'"Amazon API Gateway quotas", {API_GATEWAY_QUOTAS}), got {len(self.consumers)}'
            )
        if self.auth == "cognito":
            for i, consumer in enumerate(self.consumers):
                if len(consumer.models) > SCOPES_PER_APP_CLIENT:
                    problems.append(
                        f"consumers[{i}].models: at most {SCOPES_PER_APP_CLIENT} with auth 'cognito' (one "
                        f"scope per model, and an app client allows {SCOPES_PER_APP_CLIENT} "
                        f'AllowedOAuthScopes, "CreateUserPoolClient", {APP_CLIENT_API}), '
                        f"got {len(consumer.models)}"
                    )
                unused = [f for f in ("rate", "burst", "quota_per_day") if getattr(consumer, f) is not None]
                if unused:
                    problems.append(
                        f"consumers[{i}].{unused[0]}: applies with auth 'api_key' only (a usage plan's "
                        "throttle and quota); with auth 'cognito' each model's throttle applies"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class AlarmSettings(_Frozen):
    """Where alarms go: an SNS topic the kit creates, optionally with an e-mail subscription."""

    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class StoreSettings(_Frozen):
    """The prediction store: a finished run's predictions kept by record id, served by the API."""

    ttl_days: int | None = Field(
        90, ge=1, le=3650, description="days a stored prediction is kept (null: until overwritten)"
    )


FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


# ------------------------------------------------------------------------------------------------
# Processing: what turns a client's image / text / bytes into the graph's tensors, and its outputs
# into a readable answer. It ships in the model's bundle and runs in every serving path
# (layers/python/mdk_runtime/processing.py); the README's "Processing reference" documents it.
# ------------------------------------------------------------------------------------------------

GraphName = Annotated[str, Field(min_length=1, max_length=256)]


class ResizeSettings(_Frozen):
    """How a decoded image becomes the graph's height x width."""

    mode: Literal["stretch", "letterbox", "centre_crop", "fit_height"] = Field(
        "stretch",
        description=(
            "stretch: to exactly width x height; letterbox: scaled to fit, aspect kept, centred, the rest "
            "filled; centre_crop: shorter side scaled to `shorter_side` (default the larger of width and "
            "height), then the centre cut out; fit_height: scaled to `height` with the aspect kept, as wide "
            "as that makes it up to `width` (squeezed beyond), filled on the right (text-line models)"
        ),
    )
    width: int = Field(ge=1, le=8192)
    height: int = Field(ge=1, le=8192)
    shorter_side: int | None = Field(None, ge=1, le=8192, description="centre_crop only")
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "bilinear"
    antialias: bool = Field(
        True,
        description=(
            "false: no low-pass filter when shrinking, sampling as OpenCV's cv2.resize does (bilinear: the "
            "same pixels to within one grey level); for models trained on OpenCV's resize"
        ),
    )

    @model_validator(mode="after")
    def _crop_only(self) -> ResizeSettings:
        if self.shorter_side is not None and self.mode != "centre_crop":
            raise ValueError(f"shorter_side applies to mode centre_crop only, not {self.mode!r}")
        if self.shorter_side is not None and self.shorter_side < max(self.width, self.height):
            raise ValueError(
                f"shorter_side ({self.shorter_side}) must be at least the crop ({self.width} x {self.height})"
            )
        return self


class ImageProcessing(_Frozen):
    """An image model: raw image bodies, base64 in JSON, or multipart uploads, decoded with Pillow."""

    input: GraphName | None = Field(
        None, description="the graph input the image feeds (default: the only one)"
    )
    channels: Literal["RGB", "BGR", "L"] = Field("RGB", description="channel order the model was trained on")
    resize: ResizeSettings | None = Field(
        None, description="none: the image must already be the graph's size"
    )
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    scale: float = Field(1 / 255, gt=0, description="pixel values (0-255) are multiplied by this first")
    mean: list[float] | None = Field(None, min_length=1, max_length=4, description="then subtracted")
    std: list[float] | None = Field(None, min_length=1, max_length=4, description="then divided by")
    fill: float = Field(0.0, description="value of padded cells, in the model's input (after normalising)")
    dtype: Literal["float32", "float16", "uint8"] | None = Field(None, description="default: the graph's")
    max_pixels: int = Field(
        40_000_000,
        ge=1,
        le=178_956_970,
        description="larger images are refused before decoding (image bombs)",
    )

    @model_validator(mode="after")
    def _per_channel(self) -> ImageProcessing:
        width = 1 if self.channels == "L" else 3
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) not in (1, width):
                raise ValueError(f"{key}: expected 1 or {width} values (one per channel), got {len(value)}")
        if self.std is not None and any(v == 0 for v in self.std):
            raise ValueError("std: values must not be 0")
        return self


class TextInputs(_Frozen):
    """Which graph input gets which tokenizer output (an absent name is not fed)."""

    input_ids: GraphName = "input_ids"
    attention_mask: GraphName | None = "attention_mask"
    token_type_ids: GraphName | None = None


class TextProcessing(_Frozen):
    """A text model: strings tokenized with the Hugging Face `tokenizers` library."""

    tokenizer: Path = Field(
        description="a tokenizer.json, relative to the config file; shipped in the bundle"
    )
    max_length: int = Field(512, ge=1, le=1_000_000)
    padding: Literal["longest", "max_length"] = Field(
        "longest", description="longest: to the longest text of the request; max_length: always max_length"
    )
    truncation: bool = Field(True, description="false: a text longer than max_length is refused (422)")
    add_special_tokens: bool = True
    inputs: TextInputs = Field(default_factory=TextInputs)

    @field_validator("tokenizer", mode="after")
    @classmethod
    def _tokenizer_file(cls, value: Path, info: ValidationInfo) -> Path:
        path = value if value.is_absolute() else _base_dir(info) / value
        if not path.is_file():
            raise ValueError(f"file not found: {value}")
        return path.resolve()


class OutputProcessing(_Frozen):
    """A readable answer from the graph's outputs (after a handler's postprocess, if any, none of this)."""

    output: GraphName | None = Field(None, description="the graph output to read (default: the first)")
    kind: Literal["classes", "embedding", "tensor"] = Field(
        "classes", description="classes: labels with scores; embedding: a vector; tensor: the output as is"
    )
    softmax: bool = Field(False, description="classes: the output holds logits; turn them into probabilities")
    top_k: int = Field(5, ge=1, le=1000, description="classes: how many classes each answer lists")
    threshold: float | None = Field(None, ge=0, le=1, description="classes: leave out classes scoring below")
    pooling: Literal["none", "mean", "cls"] = Field(
        "none", description="embedding of a text model: average the tokens (masked) or take the first"
    )
    normalize: bool = Field(False, description="embedding: scale to unit length (L2)")

    @model_validator(mode="after")
    def _kind_fields(self) -> OutputProcessing:
        set_ = self.model_fields_set
        for key, kinds in (
            ("softmax", {"classes"}),
            ("top_k", {"classes"}),
            ("threshold", {"classes"}),
            ("pooling", {"embedding"}),
            ("normalize", {"embedding"}),
        ):
            if key in set_ and self.kind not in kinds:
                raise ValueError(f"{key} applies to kind {' or '.join(sorted(kinds))}, not {self.kind!r}")
        return self


class ProcessingSettings(_Frozen):
    """Pre- and post-processing that ships with the model (in its bundle, with its version)."""

    image: ImageProcessing | None = None
    text: TextProcessing | None = None
    output: OutputProcessing | None = None
    handler: Path | None = Field(
        None,
        description=(
            "a Python module with hooks (load, preprocess, postprocess), relative to the config file; "
            "copied into the bundle"
        ),
    )
    requirements: Path | None = Field(
        None, description="the handler's own pinned requirements, installed into this model's image only"
    )
    files: list[Path] = Field(
        default_factory=list, max_length=64, description="more files the handler reads, shipped beside it"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="handed to the hooks as context.options"
    )
    content_types: list[Annotated[str, Field(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$")]] = Field(
        default_factory=list,
        max_length=16,
        description="raw request bodies the handler takes besides JSON (e.g. application/octet-stream)",
    )

    @field_validator("handler", "requirements", mode="after")
    @classmethod
    def _file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = value if value.is_absolute() else _base_dir(info) / value
        if not path.is_file():
            raise ValueError(f"file not found: {value}")
        if info.field_name == "handler" and path.suffix != ".py":
            raise ValueError(f"expected a Python module (.py), got {str(value)!r}")
        return path.resolve()

    @field_validator("files", mode="after")
    @classmethod
    def _files(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        out: list[Path] = []
        for i, item in enumerate(value):
            path = item if item.is_absolute() else _base_dir(info) / item
            if not path.is_file():
                raise ValueError(f"[{i}]: file not found: {item}")
            out.append(path.resolve())
        names = [p.name for p in out]
        if len(set(names)) != len(names):
            raise ValueError("file names must be unique (they are copied side by side into the bundle)")
        return out

    @model_validator(mode="after")
    def _one_input(self) -> ProcessingSettings:
        if self.image is not None and self.text is not None:
            raise ValueError("give image or text, not both (a handler's preprocess covers other inputs)")
        if self.files and self.handler is None:
            raise ValueError("files are for a handler; set handler too")
        if self.requirements is not None and self.handler is None:
            raise ValueError("requirements are for a handler; set handler too")
        if self.content_types and self.handler is None:
            raise ValueError("content_types are for a handler's preprocess; set handler too")
        for kind in self.content_types:
            # Each raw type is one of the API's binary media types: one that covers JSON would make every
            # JSON body binary ("Content type conversions in API Gateway",
            # https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings.html).
            if kind in ("*/*", "application/*") or kind == "application/json" or "jsonlines" in kind:
                raise ValueError(
                    f"content_types: {kind!r} covers JSON, which every model reads already; name the raw "
                    "types the handler takes (e.g. application/octet-stream, audio/wav)"
                )
        if not (self.image or self.text or self.output or self.handler):
            raise ValueError("expected at least one of image, text, output or handler")
        return self


class BatchSettings(_Frozen):
    """Batch transform of the files dropped into ``incoming/<model>/`` of the batch bucket."""

    enabled: bool = True
    instance_type: str = Field("ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(1, ge=1, le=100)
    max_payload_mb: int = Field(6, ge=1, le=100, description="MB of records per request to the container")
    max_concurrent_transforms: int = Field(1, ge=1, le=100, description="requests in flight per instance")
    invocation_timeout_s: int = Field(600, ge=1, le=3600, description="per request to the container")
    invocation_retries: int = Field(1, ge=0, le=3, description="SageMaker's retries of a failed request")
    id_field: Annotated[str, Field(pattern=FIELD_NAME)] | None = Field(
        None,
        description="records are JSON objects with this id and `features_field`; outputs carry the id",
    )
    features_field: Annotated[str, Field(pattern=FIELD_NAME)] = Field(
        "features", description="with id_field: the member holding the instance the model scores"
    )
    store: StoreSettings | None = Field(None, description="keep predictions by id, served by the API")

    @model_validator(mode="after")
    def _aws_limits(self) -> BatchSettings:
        product = self.max_payload_mb * self.max_concurrent_transforms
        if product > 100:
            raise ValueError(
                "max_payload_mb x max_concurrent_transforms must be <= 100 (SageMaker's limit), "
                f"got {product}"
            )
        if self.store is not None and self.id_field is None:
            raise ValueError("store needs id_field: stored predictions are looked up by each record's id")
        if self.id_field is not None and self.id_field == self.features_field:
            raise ValueError("id_field and features_field must differ")
        if instance_family(self.instance_type) in GRAVITON_FAMILIES:
            # The same rule as the endpoints': batch jobs run the same x86_64 serving image.
            raise ValueError(
                f"Graviton (arm64) instances are not supported by the serving image: {self.instance_type}"
            )
        return self


class CaptureSettings(_Frozen):
    """Sampled requests and answers written to the deployment's capture bucket, on both runtimes, as
    SageMaker Data Capture's JSON Lines records under ``capture/<model>/<version>/``."""

    percent: float = Field(
        0, ge=0, le=100, description="share of predictions captured (0: none); SageMaker's sampling too"
    )
    drop_fields: list[Annotated[str, Field(pattern=FIELD_NAME)]] = Field(
        default_factory=list,
        max_length=100,
        description=(
            "JSON members removed from captured requests before they are written (top level, and each "
            "object in instances/inputs); Lambda models only (SageMaker captures natively, unfiltered)"
        ),
    )
    retention_days: int = Field(90, ge=1, le=3650, description="captured records expire after this")

    @field_validator("drop_fields")
    @classmethod
    def _unique_fields(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for j, name in enumerate(value):
            if name in seen:
                raise ValueError(f"[{j}]: {name!r} is listed twice")
            seen.add(name)
        return value


class MonitorSettings(_Frozen):
    """The scheduled job that joins feedback with captured predictions (live quality) and compares
    captured inputs and outputs with the model's baseline (drift)."""

    every_minutes: int = Field(
        60, ge=1, le=1440, description="how often the job runs (EventBridge Scheduler)"
    )
    window_hours: int = Field(24, ge=1, le=720, description="the captured predictions each run looks at")
    min_feedback: int = Field(
        20, ge=1, le=1_000_000, description="joined records needed before a quality figure is published"
    )
    accuracy_floor: float | None = Field(
        None, gt=0, le=1, description="classifiers: alarm when live accuracy falls below"
    )
    mae_ceiling: float | None = Field(None, gt=0, description="regressors: alarm when live MAE rises above")
    baseline: Path | None = Field(
        None, description="the baseline file `mdk baseline` wrote (drift is measured against it)"
    )
    drift_threshold: float = Field(
        0.2, gt=0, le=10, description="population stability index over which a feature (or the output) alarms"
    )
    min_records: int = Field(
        100, ge=10, le=1_000_000, description="captured instances needed before drift is published"
    )

    @field_validator("baseline", mode="after")
    @classmethod
    def _baseline_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = value if value.is_absolute() else _base_dir(info) / value
        if value.suffix != ".json":
            raise ValueError(f"expected the .json file `mdk baseline` writes, got {str(value)!r}")
        if not path.is_file():
            raise ValueError(f"file not found: {value} (write it with `mdk baseline <model> <data>`)")
        return path.resolve()

    @model_validator(mode="after")
    def _one_quality_bound(self) -> MonitorSettings:
        if self.accuracy_floor is not None and self.mae_ceiling is not None:
            raise ValueError(
                "accuracy_floor is for classifiers and mae_ceiling for regressors: set one of them"
            )
        return self


class ModelConfig(_Frozen):
    """One model: its artifact, where it runs, and how."""

    name: DnsName
    artifact: Path = Field(description="the ONNX file, relative to the config file")
    runtime: Literal["lambda", "sagemaker"]
    version: Annotated[str, AfterValidator(_version)] | None = Field(
        None, description="defaults to the first 12 hex digits of the artifact's SHA-256"
    )
    description: str = Field("", max_length=1024)
    example: dict[str, Any] | list[Any] | Path | None = Field(
        None,
        description=(
            "an example request, inline or as a JSON file (warm-up and smoke tests); a model with "
            "processing may name any file its clients send (an image, a text file, bytes)"
        ),
    )
    schema_: SchemaOverrides = Field(default_factory=SchemaOverrides, alias="schema")
    lambda_: LambdaSettings = Field(default_factory=LambdaSettings, alias="lambda")
    sagemaker: SageMakerSettings = Field(default_factory=SageMakerSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    processing: ProcessingSettings | None = None
    throttle: Throttle | None = Field(
        None, description="the model's stage throttle, all callers (default api.throttle_rate/burst)"
    )
    capture: CaptureSettings = Field(default_factory=CaptureSettings)
    monitor: MonitorSettings | None = Field(
        None, description="live quality from feedback and drift against a baseline (needs capture)"
    )

    @field_validator("artifact", mode="after")
    @classmethod
    def _artifact_exists(cls, value: Path, info: ValidationInfo) -> Path:
        base = _base_dir(info)
        path = value if value.is_absolute() else base / value
        if value.suffix != ".onnx":
            raise ValueError(f"expected an .onnx file, got {str(value)!r}")
        if not path.is_file():
            raise ValueError(f"file not found: {value}")
        return path.resolve()

    @field_validator("example", mode="after")
    @classmethod
    def _example_file(cls, value: dict[str, Any] | Path | None, info: ValidationInfo) -> Any:
        if isinstance(value, Path):
            path = value if value.is_absolute() else _base_dir(info) / value
            if not path.is_file():
                raise ValueError(f"file not found: {value}")
            return path.resolve()
        return value

    @model_validator(mode="after")
    def _example_kind(self) -> ModelConfig:
        example = self.example
        if isinstance(example, Path) and example.suffix != ".json" and self.processing is None:
            raise ValueError(
                f"example: {example.name} is not a JSON request; a model without processing takes tensors "
                "as JSON (a file its clients send as is, e.g. an image, needs processing)"
            )
        if isinstance(example, list) and self.processing is None:
            raise ValueError("example: a bare list is an example only for a model with processing")
        return self

    @model_validator(mode="after")
    def _handler_requirements(self) -> ModelConfig:
        if self.runtime == "sagemaker" and self.processing is not None and self.processing.requirements:
            raise ValueError(
                "processing.requirements: not supported for runtime sagemaker yet (one serving image serves "
                "every SageMaker model, with Pillow and tokenizers installed); use packages the image has, "
                "or runtime lambda, whose image is the model's own"
            )
        return self

    @model_validator(mode="after")
    def _capture(self) -> ModelConfig:
        legacy = self.sagemaker.data_capture_percent
        if "capture" in self.model_fields_set and legacy and legacy != self.capture.percent:
            raise ValueError(
                f"sagemaker.data_capture_percent ({legacy}) and capture.percent ({self.capture.percent}) "
                "disagree: set capture.percent only (data_capture_percent is its old name)"
            )
        if self.runtime == "sagemaker" and not float(self.capture.percent).is_integer():
            raise ValueError(
                f"capture.percent: SageMaker samples whole percents (InitialSamplingPercentage), got "
                f"{self.capture.percent}"
            )
        if self.runtime == "sagemaker" and self.capture.drop_fields:
            raise ValueError(
                "capture.drop_fields: SageMaker endpoints capture natively and cannot drop fields; remove "
                "them, or serve the model on lambda"
            )
        if self.monitor is not None and self.capture_percent == 0:
            raise ValueError("monitor: needs capture.percent > 0 (the job reads the captured predictions)")
        return self

    @property
    def capture_percent(self) -> float:
        """The share captured: ``capture.percent``, or the old ``sagemaker.data_capture_percent``."""
        return self.capture.percent or float(self.sagemaker.data_capture_percent)

    @model_validator(mode="after")
    def _settings_match_runtime(self) -> ModelConfig:
        other = "sagemaker" if self.runtime == "lambda" else "lambda_"
        if other in self.model_fields_set:
            key = other.rstrip("_")
            raise ValueError(f"'{key}' settings given, but runtime is {self.runtime!r}")
        return self


class KitConfig(_Frozen):
    """The whole config file."""

    project: DnsName = "mdk"
    default_model: str | None = Field(None, description="what `make up` serves; the first model if unset")
    api: ApiSettings = Field(default_factory=ApiSettings)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> KitConfig:
        duplicates = _duplicates([m.name for m in self.models])
        if duplicates:
            raise ValueError(duplicates[0])
        names = [m.name for m in self.models]
        if self.default_model is not None and self.default_model not in names:
            raise ValueError(
                f"default_model: no model named {self.default_model!r} (models: {', '.join(names)})"
            )
        return self

    @model_validator(mode="after")
    def _access(self) -> KitConfig:
        names = [m.name for m in self.models]
        problems = _duplicate_names([c.name for c in self.api.consumers], "api.consumers", "consumer")
        for i, consumer in enumerate(self.api.consumers):
            for j, model in enumerate(consumer.models):
                if model not in names:
                    problems.append(
                        f"api.consumers[{i}].models[{j}]: no model named {model!r} "
                        f"(models: {', '.join(names)})"
                    )
        if self.api.auth == "cognito" and len(names) > SCOPES_PER_RESOURCE_SERVER:
            problems.append(
                f"models: at most {SCOPES_PER_RESOURCE_SERVER} with api.auth 'cognito' (one OAuth scope per "
                f"model in one resource server, which allows {SCOPES_PER_RESOURCE_SERVER} custom scopes, "
                f'"CreateResourceServer", {RESOURCE_SERVER_API}), got {len(names)}'
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def throttle(self, model: ModelConfig) -> Throttle:
        """``model``'s stage throttle: its own, or the API's."""
        return self.api.stage_throttle(model)

    @property
    def consumers(self) -> list[Consumer]:
        """The consumers the stacks build, defaults filled: ``api.consumers``, or with ``auth: api_key``
        and none listed the one default consumer (one key, one plan) that reaches every model."""
        api = self.api
        if api.auth == "iam":
            return []
        listed = api.consumers
        if not listed and api.auth == "api_key":
            listed = [ConsumerSettings(name=DEFAULT_CONSUMER, models=[m.name for m in self.models])]
        return [
            Consumer(
                name=c.name,
                models=tuple(c.models),
                rate=c.rate if c.rate is not None else api.throttle_rate,
                burst=c.burst if c.burst is not None else api.throttle_burst,
                quota_per_day=c.quota_per_day if c.quota_per_day is not None else api.quota_per_day,
            )
            for c in listed
        ]

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    @property
    def default(self) -> ModelConfig:
        return self.model(self.default_model) if self.default_model else self.models[0]


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, Mapping) else {}
    return Path(context.get("base_dir", "."))


# ------------------------------------------------------------------------------------------------
# Error messages
# ------------------------------------------------------------------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f"[{str(part)!r}]"
    return text


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed where ``loc`` points (for "unknown field" messages)."""
    model: Any = KitConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            if isinstance(part, str):  # a dict key (input name): the value type stays
                continue
            return None
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if field is None:
            return None
        model = _model_type(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return None


def _model_type(annotation: Any) -> Any:
    """The pydantic model inside ``list[M]``, ``dict[str, M]``, ``M | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    for arg in get_args(annotation):
        found = _model_type(arg)
        if found is not None:
            return found
    return annotation if origin is None else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Mapping[str, Any]) -> tuple[str, str]:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(loc)
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return _path(loc), f"unknown field{hint}"
    if kind == "missing":
        return _path(loc), "required field is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # "models[0].name: duplicate ..." raised by a model validator carries its own path.
    if re.match(r"^[a-z_]+(\[\d+\])*(\.[a-z_]+(\[\d+\])*)*: ", message) and kind == "value_error":
        own, _, rest = message.partition(": ")
        return _path((*loc, *_split(own))), rest
    if message.startswith("["):  # a shape element: "[2]: expected ..."
        index, _, rest = message.partition(": ")
        return _path(loc) + index, rest
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
        for words, sign in (("greater than or equal to", ">="), ("less than or equal to", "<="),
                            ("greater than", ">"), ("less than", "<")):  # fmt: skip
            message = message.replace(f"expected {words} ", f"expected a value {sign} ")
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        message = f"expected a string matching {ctx.get('pattern')}"
    elif kind in ("too_short", "string_too_short") and "min_length" in ctx:
        message = (
            f"expected at least {ctx['min_length']} {'item(s)' if kind == 'too_short' else 'character(s)'}"
        )
    elif kind in ("too_long", "string_too_long") and "max_length" in ctx:
        message = (
            f"expected at most {ctx['max_length']} {'item(s)' if kind == 'too_long' else 'character(s)'}"
        )
    value = error.get("input")
    if kind != "value_error" and not isinstance(value, dict | list) and "got " not in message:
        message += f", got {_short(value)}"
    return _path(loc), message


def _split(path: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name, index in re.findall(r"([a-z_]+)|\[(\d+)\]", path):
        parts.append(name if name else int(index))
    return tuple(parts)


def format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        # A validator that finds several problems raises them one per line: each is its own problem.
        lines = str(error["msg"]).split("\n") if error["type"] == "value_error" else [error["msg"]]
        for line in lines:
            where, message = _message({**error, "msg": line})
            problems.append(f"{where}: {message}" if where else message)
    return problems


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a config with both is a mistake worth naming."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(
    data: Any, *, base_dir: Path, source: str = DEFAULT_CONFIG, check_models: bool = True
) -> KitConfig:
    """Validate a config document (already parsed from YAML/JSON)."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping with 'models', got {type(data).__name__}"])
    context = {"base_dir": base_dir}
    try:
        config = KitConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems = format_errors(exc) + _raw_duplicates(data)
        if check_models:  # the models that are fine on their own still get their artifact checked
            problems += check_artifacts(_valid_entries(data.get("models"), context))
        raise ConfigError(source, problems) from None
    if check_models:
        problems = check_artifacts(list(enumerate(config.models)))
        if problems:
            raise ConfigError(source, problems)
    return config


def _valid_entries(models: Any, context: dict[str, Any]) -> list[tuple[int, ModelConfig]]:
    valid = []
    for i, raw in enumerate(models if isinstance(models, list) else []):
        try:
            valid.append((i, ModelConfig.model_validate(raw, context=context)))
        except ValidationError:
            continue
    return valid


def _duplicates(names: list[Any]) -> list[str]:
    """One problem per repeated name (also run on raw data: pydantic skips validators once a field fails)."""
    first: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(f"models[{i}].name: duplicate model name {name!r} (also models[{first[name]}])")
        else:
            first[name] = i
    return problems


def _duplicate_names(names: list[str], field: str, kind: str) -> list[str]:
    """One problem per repeated name in the list ``field`` (relative to the model that holds it)."""
    first: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names):
        if name in first:
            problems.append(
                f"{field}[{i}].name: duplicate {kind} name {name!r} (also {field}[{first[name]}])"
            )
        else:
            first[name] = i
    return problems


def _raw_duplicates(data: Mapping[str, Any]) -> list[str]:
    models = data.get("models")
    if not isinstance(models, list):
        return []
    return _duplicates([m.get("name") if isinstance(m, dict) else None for m in models])


def load_config(path: Path | str = DEFAULT_CONFIG, *, check_models: bool = True) -> KitConfig:
    """Read and validate the config file; raise ConfigError listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [f"config file not found: {path}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read the config file: {exc}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    return parse_config(data, base_dir=path.resolve().parent, source=source, check_models=check_models)


def check_artifacts(models: list[tuple[int, ModelConfig]]) -> list[str]:
    """Load each (index, model)'s graph; check its overrides and example against it as the runtime will."""
    import onnxruntime as ort

    from mdk.bundle import check_external_data, model_spec
    from mdk.sizing import check_sizes
    from mdk_runtime.errors import MdkError
    from mdk_runtime.model import Model, session_options

    problems: list[str] = []
    for i, model in models:
        missing = check_external_data(model.artifact)
        if missing:
            problems.extend(f"models[{i}].artifact: {p}" for p in missing)
            continue
        too_big = check_sizes(model)  # before loading: a model that cannot fit is not loaded here either
        if too_big:
            problems.extend(f"models[{i}].{p}" for p in too_big)
            continue
        try:
            spec = model_spec(model)
        except (OSError, ValueError) as exc:
            problems.append(f"models[{i}].example: {exc}")
            continue
        if model.processing is not None:
            problems.extend(check_processing(i, model))
            continue
        try:
            session = ort.InferenceSession(
                str(model.artifact), sess_options=session_options(1), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types, reported as a problem
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            problems.append(f"models[{i}].artifact: onnxruntime cannot load {model.artifact.name}: {reason}")
            continue
        try:
            loaded = Model.from_session(session, spec)
            problems.extend(check_monitor(i, model, classifier=loaded.signature.classifier is not None))
            if spec.example is not None:
                loaded.warm_up()
            if model.batch.enabled and not loaded.signature.batched:
                problems.append(
                    f"models[{i}].batch.enabled: the model takes one instance per request (no batch "
                    "dimension), and batch transform sends many; set batch.enabled: false"
                )
        except MdkError as exc:
            message = exc.message
            prefix = f"models[{i}]."
            problems.append(prefix + message if message.startswith("schema.") else f"models[{i}]: {message}")
    return problems


def check_processing(index: int, model: ModelConfig) -> list[str]:
    """Load a processed model as its image will (bundle, graph, processing, handler, warm-up through the
    processing with its example): a broken handler or a mismatch fails here, not at the first request."""
    import tempfile

    from mdk.bundle import write_bundle
    from mdk_runtime.service import InferenceService, Settings

    with tempfile.TemporaryDirectory(prefix="mdk-check-") as tmp:
        bundle = write_bundle(model, Path(tmp) / model.name)
        service = InferenceService.load(Settings(model_dir=bundle, threads=1))
        problems: list[str] = []
        prefix = f"models[{index}]."
        if service.load_error is not None:
            message = service.load_error.message
            problems.append(
                prefix + message
                if message.startswith(("processing", "schema."))
                else f"{prefix[:-1]}: {message}"
            )
        elif model.monitor is not None and service.model is not None:
            # A processed model's answers are its postprocessing's: a classifier when it names classes
            classifier = service.model.signature.classifier is not None or (
                model.processing is not None
                and model.processing.output is not None
                and model.processing.output.kind == "classes"
            )
            problems.extend(check_monitor(index, model, classifier=classifier))
        if (
            service.load_error is None
            and model.batch.enabled
            and service.model is not None
            and not service.model.signature.batched
        ):
            problems.append(
                f"{prefix}batch.enabled: the model takes one instance per request (no batch dimension), and "
                "batch transform sends many; set batch.enabled: false"
            )
        return problems


def check_monitor(index: int, model: ModelConfig, *, classifier: bool) -> list[str]:
    """The monitor's quality bound fits the model (accuracy for a classifier, MAE for a regressor), and
    its baseline was computed for this model."""
    monitor = model.monitor
    if monitor is None:
        return []
    at = f"models[{index}].monitor"
    problems = []
    if monitor.accuracy_floor is not None and not classifier:
        problems.append(
            f"{at}.accuracy_floor: the model is not a classifier (no labels or class scores); use "
            "mae_ceiling for a regressor"
        )
    if monitor.mae_ceiling is not None and classifier:
        problems.append(f"{at}.mae_ceiling: the model is a classifier; use accuracy_floor")
    if monitor.baseline is not None:
        import json

        try:
            baseline = json.loads(monitor.baseline.read_text())
        except (OSError, ValueError) as exc:
            return [*problems, f"{at}.baseline: not a baseline file ({exc})"]
        named = baseline.get("model") if isinstance(baseline, dict) else None
        if named != model.name:
            problems.append(
                f"{at}.baseline: computed for model {named!r}, not {model.name!r} "
                f"(write it with `mdk baseline {model.name} <data>`)"
            )
    return problems
