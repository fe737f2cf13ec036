"""Whether a model fits where it is deployed: image size, memory, instance memory; checked at config time.

``check_sizes(model)`` returns one problem per limit the model breaks, each starting with the field to
change (``lambda.memory_mb: ...``, ``artifact: ...``, ``sagemaker.instance_type: ...``), empty when it
fits. ``estimate(model)`` is the arithmetic behind it, also what ``mdk config validate`` can print.

What is counted:

* the artifact with the ONNX external-data files its graph references (they are bundled with it);
* the processing libraries the model's image gets (Pillow, tokenizers, their dependencies, the handler's
  own requirements), measured from the installed distributions of this environment (the same pinned
  versions the image installs; a requirement not installed here is listed as unmeasured);
* the kit's own runtime dependencies (``layers/requirements.txt``), measured the same way, and an
  allowance for the base image (OS and Python).

The limits are AWS's, cited where they are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mdk.sources import LAYERS_DIR

if TYPE_CHECKING:
    import onnx

    from mdk.config import ModelConfig

RUNTIME_REQUIREMENTS = LAYERS_DIR / "requirements.txt"
PROCESSING_REQUIREMENTS = LAYERS_DIR / "requirements-processing.txt"
MIB = 2**20
GB = 10**9

# "Lambda quotas" (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): "Container
# image code package size: 10 GB (maximum uncompressed image size, including all layers)". Function memory
# is 128 MB to 10,240 MB (the config's own bounds).
LAMBDA_IMAGE_LIMIT = 10 * GB
# The base image (public.ecr.aws/lambda/python:3.12: Amazon Linux 2023, CPython, the runtime interface
# client) is not measured here (no Docker); this allowance is generous for it, so an image the check passes
# is not one AWS refuses for a few hundred MB.
BASE_IMAGE_ALLOWANCE = 1 * GB

# onnxruntime's working memory, measured with bench/large_model.py (``python -m bench.large_model --measure
# FILE``: a fresh process per model, the kit's session options, peak = VmHWM after session creation, the
# warm-up and a second run, minus VmRSS once onnxruntime and numpy are imported, ~64 MiB) on x86_64 with
# onnxruntime 1.32, the worse of two runs:
#
#   model                                      file MiB   peak - before MiB   / file size
#   iris v1 (models/)                               0.0                11.8         -
#   digits v1 (models/)                             0.1                12.2         -
#   RapidOCR classifier (rapidocr_onnxruntime)      0.6                15.5         -
#   Magika standard_v3_3 (magika)                   3.0                25.7        8.6
#   RapidOCR recogniser, one 48x320 line           10.4                40.6        3.9
#   RapidOCR detector, one 640x640 image            4.5               146.7       32.6 (activations)
#   MatMul chain, float32 (bench)                 108.0               131.2        1.21
#   the same, weights in external data            108.0               121.0        1.12
#   MatMul chain, float32 (bench)                 420.0               451.7        1.08
#
# So: the weights once (onnxruntime copies them into its own buffers, pre-packed for MatMul/Gemm, and lets
# the parsed file go) plus ~12 MiB for any session, plus the activations of a request, which for a
# convolutional detector on a large image outweigh a small model many times over. The rule is the weights
# x 1.5 (the largest ratio measured on the large models, 1.21, with room) plus a fixed allowance for
# requests; a model with large activations needs more memory than this says (its warm-up, run in a
# function of the configured memory, shows it).
WORKING_MEMORY_FACTOR = 1.5
REQUEST_ALLOWANCE = 32 * MIB
# The function's process before any model weights: CPython, numpy, onnxruntime, the kit's handler and
# Powertools: 65 MiB resident after a request to the iris model (measured as above, in process), with
# 15 MiB for the runtime interface client. A model of a few MB thus fits Lambda's 128 MB minimum.
RUNTIME_BASELINE = 80 * MIB
# Pillow and tokenizers once imported add ~6 MiB resident (measured alike); a tokenizer.json adds itself.
PROCESSING_BASELINE = 32 * MIB

# Memory of common SageMaker ML instance types, GiB ("Amazon SageMaker AI pricing", instance details,
# https://aws.amazon.com/sagemaker/ai/pricing/, the same figures as the EC2 types they are built on:
# "Amazon EC2 instance types", https://aws.amazon.com/ec2/instance-types/). An unknown type skips the
# check (no problem reported): the list is for the common cases, not a gate.
SAGEMAKER_MEMORY_GIB: dict[str, float] = {
    # general purpose
    "ml.t2.medium": 4, "ml.t2.large": 8, "ml.t2.xlarge": 16, "ml.t2.2xlarge": 32,
    "ml.m4.xlarge": 16, "ml.m4.2xlarge": 32, "ml.m4.4xlarge": 64, "ml.m4.10xlarge": 160,
    "ml.m4.16xlarge": 256,
    "ml.m5.large": 8, "ml.m5.xlarge": 16, "ml.m5.2xlarge": 32, "ml.m5.4xlarge": 64,
    "ml.m5.12xlarge": 192, "ml.m5.24xlarge": 384,
    "ml.m5d.large": 8, "ml.m5d.xlarge": 16, "ml.m5d.2xlarge": 32, "ml.m5d.4xlarge": 64,
    "ml.m5d.12xlarge": 192, "ml.m5d.24xlarge": 384,
    "ml.m6i.large": 8, "ml.m6i.xlarge": 16, "ml.m6i.2xlarge": 32, "ml.m6i.4xlarge": 64,
    "ml.m6i.8xlarge": 128, "ml.m6i.12xlarge": 192, "ml.m6i.16xlarge": 256, "ml.m6i.24xlarge": 384,
    "ml.m6i.32xlarge": 512,
    # compute optimised
    "ml.c4.large": 3.75, "ml.c4.xlarge": 7.5, "ml.c4.2xlarge": 15, "ml.c4.4xlarge": 30,
    "ml.c4.8xlarge": 60,
    "ml.c5.large": 4, "ml.c5.xlarge": 8, "ml.c5.2xlarge": 16, "ml.c5.4xlarge": 32,
    "ml.c5.9xlarge": 72, "ml.c5.18xlarge": 144,
    "ml.c5d.large": 4, "ml.c5d.xlarge": 8, "ml.c5d.2xlarge": 16, "ml.c5d.4xlarge": 32,
    "ml.c5d.9xlarge": 72, "ml.c5d.18xlarge": 144,
    "ml.c6i.large": 4, "ml.c6i.xlarge": 8, "ml.c6i.2xlarge": 16, "ml.c6i.4xlarge": 32,
    "ml.c6i.8xlarge": 64, "ml.c6i.12xlarge": 96, "ml.c6i.16xlarge": 128, "ml.c6i.24xlarge": 192,
    "ml.c6i.32xlarge": 256,
    # memory optimised
    "ml.r5.large": 16, "ml.r5.xlarge": 32, "ml.r5.2xlarge": 64, "ml.r5.4xlarge": 128,
    "ml.r5.12xlarge": 384, "ml.r5.24xlarge": 768,
    "ml.r5d.large": 16, "ml.r5d.xlarge": 32, "ml.r5d.2xlarge": 64, "ml.r5d.4xlarge": 128,
    "ml.r5d.12xlarge": 384, "ml.r5d.24xlarge": 768,
    # accelerated (host memory; the model is also copied to the GPU's own memory)
    "ml.p3.2xlarge": 61, "ml.p3.8xlarge": 244, "ml.p3.16xlarge": 488,
    "ml.g4dn.xlarge": 16, "ml.g4dn.2xlarge": 32, "ml.g4dn.4xlarge": 64, "ml.g4dn.8xlarge": 128,
    "ml.g4dn.12xlarge": 192, "ml.g4dn.16xlarge": 256,
    "ml.g5.xlarge": 16, "ml.g5.2xlarge": 32, "ml.g5.4xlarge": 64, "ml.g5.8xlarge": 128,
    "ml.g5.12xlarge": 192, "ml.g5.16xlarge": 256, "ml.g5.24xlarge": 384, "ml.g5.48xlarge": 768,
    "ml.g6.xlarge": 16, "ml.g6.2xlarge": 32, "ml.g6.4xlarge": 64, "ml.g6.8xlarge": 128,
    "ml.g6.12xlarge": 192, "ml.g6.16xlarge": 256, "ml.g6.24xlarge": 384, "ml.g6.48xlarge": 768,
    "ml.inf1.xlarge": 8, "ml.inf1.2xlarge": 16, "ml.inf1.6xlarge": 48, "ml.inf1.24xlarge": 192,
}  # fmt: skip
# GPU memory of the accelerated types above, GiB (the same pages): a model must also fit there.
SAGEMAKER_GPU_MEMORY_GIB: dict[str, float] = {
    "ml.p3.2xlarge": 16, "ml.p3.8xlarge": 16, "ml.p3.16xlarge": 16,
    **{f"ml.g4dn.{s}": 16 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")},
    **{f"ml.g5.{s}": 24 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge",
                                    "24xlarge", "48xlarge")},
    **{f"ml.g6.{s}": 24 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge",
                                    "24xlarge", "48xlarge")},
}  # fmt: skip
# Part of an instance's memory that SageMaker's agents and the OS keep (an allowance, not a published
# figure): the model's working memory must fit in the rest.
INSTANCE_RESERVED_FRACTION = 0.1


@dataclass(frozen=True)
class SizeEstimate:
    """The bytes behind a model's size checks (see the module's docstring)."""

    artifact_bytes: int  # the .onnx file and the external-data files it references
    external_data: tuple[Path, ...]
    processing_bytes: int  # installed size of the processing libraries (and their dependencies)
    processing_packages: tuple[str, ...]
    runtime_bytes: int  # installed size of the kit's runtime dependencies
    base_image_bytes: int
    unmeasured: tuple[str, ...] = field(default=())  # requirements not installed here (not counted)

    @property
    def image_bytes(self) -> int:
        """The Lambda image, uncompressed: base, runtime dependencies, processing libraries, model."""
        return self.base_image_bytes + self.runtime_bytes + self.processing_bytes + self.artifact_bytes

    @property
    def memory_bytes(self) -> int:
        """What the function or container needs resident: the process, the model's working memory."""
        return memory_needed(self.artifact_bytes, processing=bool(self.processing_packages))


# ------------------------------------------------------------------------------------------------
# The artifact and its external data
# ------------------------------------------------------------------------------------------------


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of a graph and its subgraphs: initializers and attributes (Constant values)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


@cache
def _external_locations(artifact: str, size: int, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """(location, tensor name) of each external tensor, parsed once per version of the file: a config
    check, a synth and every bundle ask again, and parsing a graph of a GB takes seconds."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    del size, mtime_ns  # the cache key: a changed file is parsed again
    try:
        model = onnx.load(artifact, load_external_data=False)
    except Exception:  # noqa: BLE001 - not a readable graph: onnxruntime's load check reports it, by name
        return ()
    return tuple(
        (ExternalDataInfo(tensor).location, tensor.name)
        for tensor in _tensors(model.graph)
        if uses_external_data(tensor)
    )


def external_data_files(artifact: Path) -> list[Path]:
    """The files the graph's tensors keep their data in (``location`` relative to the artifact's folder),
    in the order first referenced. Raises ValueError for a location outside that folder or missing."""
    info = artifact.stat()
    base = artifact.parent.resolve()
    found: dict[Path, None] = {}
    for location, tensor in _external_locations(str(artifact.resolve()), info.st_size, info.st_mtime_ns):
        path = (base / location).resolve()
        if not path.is_relative_to(base):
            raise ValueError(f"external data {location!r} of tensor {tensor!r} is outside {base}")
        if not path.is_file():
            raise ValueError(f"external data file not found: {location} (tensor {tensor!r})")
        found.setdefault(path, None)
    return list(found)


def artifact_bytes(artifact: Path) -> int:
    """The artifact's size with its external-data files."""
    return artifact.stat().st_size + sum(p.stat().st_size for p in external_data_files(artifact))


# ------------------------------------------------------------------------------------------------
# Installed distributions
# ------------------------------------------------------------------------------------------------


def requirement_names(path: Path) -> list[str]:
    """The distribution names a requirements file lists (options, comments and URLs skipped)."""
    names: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            names.append(str(canonicalize_name(Requirement(line).name)))
        except InvalidRequirement:
            continue
    return names


@cache
def _distribution_size(name: str) -> int | None:
    """Installed bytes of one distribution (its RECORD's files), None when it is not installed here."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for item in dist.files or []:
        if item.size is not None:
            total += int(item.size)
            continue
        located = Path(str(item.locate()))
        if located.is_file():
            total += located.stat().st_size
    return total


@cache
def _dependencies(name: str) -> tuple[str, ...]:
    """A distribution's own requirements for this platform (extras left out)."""
    try:
        requires = metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        return ()
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()} | {"extra": ""}
    out = []
    for text in requires:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(env):
            out.append(str(canonicalize_name(requirement.name)))
    return tuple(out)


def closure(names: Iterable[str], *, exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The distributions ``names`` install (dependencies included, ``exclude``'s closure left out), and the
    ones not installed here."""
    skip = set(_closure_names(exclude)) if exclude else set()
    found: list[str] = []
    missing: list[str] = []
    for name in _closure_names(names):
        if name in skip:
            continue
        (found if _distribution_size(name) is not None else missing).append(name)
    return found, missing


def _closure_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    stack = [str(canonicalize_name(n)) for n in names]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen[name] = None
        stack.extend(_dependencies(name))
    return list(seen)


def installed_bytes(names: Iterable[str]) -> int:
    return sum(_distribution_size(n) or 0 for n in names)


def _processing_names(model: ModelConfig) -> list[str]:
    """The distributions the model's processing adds to its image."""
    processing = model.processing
    if processing is None:
        return []
    pinned = requirement_names(PROCESSING_REQUIREMENTS)
    names = []
    if processing.image is not None:
        names += [n for n in pinned if n == "pillow"]
    if processing.text is not None:
        names += [n for n in pinned if n == "tokenizers"]
    if processing.requirements is not None:
        names += requirement_names(processing.requirements)
    return names


# ------------------------------------------------------------------------------------------------
# The estimate and the checks
# ------------------------------------------------------------------------------------------------


def estimate(model: ModelConfig) -> SizeEstimate:
    """The sizes behind ``check_sizes``. Raises ValueError when an external-data file is missing."""
    files = external_data_files(model.artifact)
    size = model.artifact.stat().st_size + sum(p.stat().st_size for p in files)
    runtime_names = requirement_names(RUNTIME_REQUIREMENTS)
    runtime, _ = closure(runtime_names)
    processing, missing = closure(_processing_names(model), exclude=runtime_names)
    return SizeEstimate(
        artifact_bytes=size,
        external_data=tuple(files),
        processing_bytes=installed_bytes(processing),
        processing_packages=tuple(sorted(processing)),
        runtime_bytes=installed_bytes(runtime),
        base_image_bytes=BASE_IMAGE_ALLOWANCE,
        unmeasured=tuple(sorted(missing)),
    )


def _gb(n: float) -> str:
    return f"{n / GB:.2f} GB"


def _mb(n: float) -> str:
    return f"{n / MIB:,.0f} MB"


def memory_needed(artifact_bytes: int, *, processing: bool) -> int:
    """Resident bytes a process serving a model of ``artifact_bytes`` needs (the rule measured above)."""
    extra = PROCESSING_BASELINE if processing else 0
    return RUNTIME_BASELINE + extra + int(WORKING_MEMORY_FACTOR * artifact_bytes) + REQUEST_ALLOWANCE


def _memory_terms(artifact_bytes: int, *, processing: bool) -> str:
    terms = [
        f"the model's {_mb(artifact_bytes)} x {WORKING_MEMORY_FACTOR:g} (onnxruntime's working memory)",
        f"{_mb(RUNTIME_BASELINE)} for the runtime",
    ]
    if processing:
        terms.append(f"{_mb(PROCESSING_BASELINE)} for the processing libraries")
    terms.append(f"{_mb(REQUEST_ALLOWANCE)} for requests")
    return ", ".join(terms)


def check_sizes(model: ModelConfig) -> list[str]:
    """What does not fit, one problem per limit, each starting with the field to change (empty: it fits).

    A problem reading the artifact's external data is reported on ``artifact``."""
    try:
        sizes = estimate(model)
    except (OSError, ValueError) as exc:
        return [f"artifact: {exc}"]
    processing = bool(sizes.processing_packages)
    problems = []
    if model.runtime == "lambda":
        if sizes.image_bytes > LAMBDA_IMAGE_LIMIT:
            libraries = f", processing libraries {_mb(sizes.processing_bytes)}" if processing else ""
            problems.append(
                f"artifact: the Lambda image would be about {_gb(sizes.image_bytes)} uncompressed (model "
                f"{_mb(sizes.artifact_bytes)}{libraries}, runtime and base image "
                f"{_mb(sizes.runtime_bytes + sizes.base_image_bytes)}), over Lambda's 10 GB limit for a "
                "container image: use runtime: sagemaker, or a smaller (quantised) model"
            )
        if sizes.memory_bytes > model.lambda_.memory_mb * MIB:
            wanted = -(-sizes.memory_bytes // MIB)
            fix = (
                f"set lambda.memory_mb to at least {wanted}"
                if wanted <= 10_240
                else "more than Lambda's most (10240 MB): use runtime: sagemaker"
            )
            problems.append(
                f"lambda.memory_mb: {model.lambda_.memory_mb} MB is less than the model needs, about "
                f"{_mb(sizes.memory_bytes)} ({_memory_terms(sizes.artifact_bytes, processing=processing)}); "
                f"{fix}"
            )
    else:
        sagemaker = model.sagemaker
        problems += _instance_problems(
            "sagemaker.instance_type", sagemaker.instance_type, sizes.artifact_bytes, processing
        )
        others = [(f"sagemaker.variants[{i}]", v) for i, v in enumerate(sagemaker.variants)]
        if sagemaker.shadow is not None:
            others.append(("sagemaker.shadow", sagemaker.shadow))
        for where, variant in others:
            try:
                size = artifact_bytes(variant.artifact) if variant.artifact else sizes.artifact_bytes
            except (OSError, ValueError) as exc:
                problems.append(f"{where}.artifact: {exc}")
                continue
            problems += _instance_problems(
                f"{where}.instance_type", variant.instance_type or sagemaker.instance_type, size, processing
            )
    if model.batch.enabled:  # batch transform runs the SageMaker serving image, whatever the runtime
        problems += _instance_problems(
            "batch.instance_type", model.batch.instance_type, sizes.artifact_bytes, processing
        )
    return problems


def _instance_problems(where: str, instance_type: str, size: int, processing: bool) -> list[str]:
    memory_gib = SAGEMAKER_MEMORY_GIB.get(instance_type)
    if memory_gib is None:
        return []
    usable = memory_gib * 2**30 * (1 - INSTANCE_RESERVED_FRACTION)
    needed = memory_needed(size, processing=processing)
    problems = []
    if needed > usable:
        problems.append(
            f"{where}: {instance_type} has {memory_gib:g} GiB of memory, {_mb(usable)} of it left after the "
            f"OS and SageMaker's agents; the model needs about {_mb(needed)} "
            f"({_memory_terms(size, processing=processing)}): choose an instance type with more memory"
        )
    gpu_gib = SAGEMAKER_GPU_MEMORY_GIB.get(instance_type)
    if gpu_gib is not None and size * WORKING_MEMORY_FACTOR > gpu_gib * 2**30:
        problems.append(
            f"{where}: the model's {_mb(size)} x {WORKING_MEMORY_FACTOR:g} (onnxruntime's working memory) "
            f"does not fit the {gpu_gib:g} GiB of GPU memory of {instance_type}"
        )
    return problems


__all__ = [
    "SizeEstimate",
    "artifact_bytes",
    "check_sizes",
    "closure",
    "estimate",
    "external_data_files",
    "memory_needed",
    "requirement_names",
]
