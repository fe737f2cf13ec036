"""Model bundles (``model.onnx`` + ``mdk-model.json``) and the build contexts of the kit's images.

A bundle is what an image bakes in. A build context holds exactly the files an image or a zip
function is made of (``cdk synth`` writes one per model), so an asset's hash changes when, and only
when, what it deploys changes: a new artifact starts a rollout of that model alone, and an unchanged
config synthesizes to the same template.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mdk import sources
from mdk.config import ModelConfig
from mdk.registry import BatchTopology
from mdk_runtime.spec import (
    ARTIFACT_FILE,
    SPEC_FILE,
    ClassifierOverride,
    InputOverride,
    ModelSpec,
    file_sha256,
)

# Where the kit's own files are (a checkout, or an installed kit: mdk.sources).
REPO = sources.CHECKOUT
RUNTIME_DIR = sources.RUNTIME_DIR
HANDLERS_DIR = sources.HANDLERS_DIR
SAGEMAKER_DIR = sources.SAGEMAKER_DIR
LAYERS_DIR = sources.LAYERS_DIR
LAMBDA_DOCKERFILE = HANDLERS_DIR / "Dockerfile"
# The modules of the inference function (the rollout hooks are a function of their own).
INFERENCE_MODULES = ("__init__.py", "inference.py", "http.py", "api.py", "shadow.py")
IMAGE_MODEL_DIR = "model"  # the MODEL_DIR build argument, inside the context
SAGEMAKER_MODULES = ("__init__.py", "batching.py", "server.py", "serve.py")


def load_example(model: ModelConfig) -> Any:
    """The model's example request: inline in the config, or read from the JSON file it names.

    A processed model's example may be any file its clients send (an image, a text): that one is
    shipped in the bundle (:func:`processing_doc`), and this returns None.
    """
    if isinstance(model.example, Path) and raw_example(model):
        return None
    if isinstance(model.example, Path):
        try:
            return json.loads(model.example.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{model.example.name} is not valid JSON: {exc}") from None
    return model.example


# -- what a bundle holds besides the graph --------------------------------------------------------

PROCESSING_DIR = "processing"
REQUIREMENTS_FILE = "requirements.txt"  # the model's own packages: installed into its image only
PROCESSING_REQUIREMENTS = LAYERS_DIR / "requirements-processing.txt"
#: Example files by suffix: what a client sends them as.
EXAMPLE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".txt": "text/plain",
    ".bin": "application/octet-stream",
}


def raw_example(model: ModelConfig) -> bool:
    """Whether the model's example is a file its clients send as is (not a JSON request document)."""
    return (
        isinstance(model.example, Path) and model.processing is not None and model.example.suffix != ".json"
    )


def example_content_type(model: ModelConfig) -> str:
    assert isinstance(model.example, Path)
    processing = model.processing
    fallback = processing.content_types[0] if processing is not None and processing.content_types else None
    return EXAMPLE_TYPES.get(model.example.suffix.lower()) or fallback or "application/octet-stream"


def external_data(artifact: Path) -> list[str]:
    """The external-data files an ONNX graph names (its weights saved apart, as onnxruntime resolves them
    beside the graph), relative to the graph's directory; ValueError for one outside it or missing."""
    from mdk.sizing import external_data_files

    base = artifact.parent.resolve()
    return [path.relative_to(base).as_posix() for path in external_data_files(artifact)]


def check_external_data(artifact: Path) -> list[str]:
    """Problems with the graph's external data: a file outside its directory, or one that is missing."""
    try:
        external_data(artifact)
    except ValueError as exc:
        return [f"the graph's {exc}"]
    return []


def bundle_files(model: ModelConfig, *, artifact: Path | None = None) -> dict[str, Path | bytes]:
    """Path in the bundle -> source file (or bytes), besides ``mdk-model.json``: the graph with its
    external data, and the model's processing files and requirements."""
    source = artifact or model.artifact
    files: dict[str, Path | bytes] = {ARTIFACT_FILE: source}
    try:
        for name in external_data(source):
            files[name] = source.parent / name
    except ValueError:
        pass  # config validation reports it (check_external_data); the bundle then holds the graph alone
    processing = model.processing
    requirements = [
        "# What this model's processing needs, installed into its image only (written by mdk bundle).\n"
    ]
    if processing is not None:
        pins = _processing_pins()
        if processing.image is not None:
            requirements.append(pins["pillow"] + "\n")
        if processing.text is not None:
            requirements.append(pins["tokenizers"] + "\n")
            files[f"{PROCESSING_DIR}/tokenizer.json"] = processing.text.tokenizer
        if processing.handler is not None:
            files[f"{PROCESSING_DIR}/{processing.handler.name}"] = processing.handler
        for extra in processing.files:
            files[f"{PROCESSING_DIR}/{extra.name}"] = extra
        if processing.requirements is not None:
            requirements.append(f"# {processing.requirements.name}, the handler's own\n")
            requirements.append(processing.requirements.read_text(encoding="utf-8").rstrip("\n") + "\n")
        if raw_example(model):
            assert isinstance(model.example, Path)
            files[f"{PROCESSING_DIR}/example{model.example.suffix.lower()}"] = model.example
    files[REQUIREMENTS_FILE] = "".join(requirements).encode()
    return files


def _processing_pins() -> dict[str, str]:
    pins = {}
    for raw in PROCESSING_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            pins[line.split("==")[0].lower()] = line
    return pins


def processing_doc(model: ModelConfig) -> dict[str, Any] | None:
    """The spec's ``processing``: the config's, with file paths as the bundle holds them."""
    processing = model.processing
    if processing is None:
        return None
    doc: dict[str, Any] = {}
    if processing.image is not None:
        doc["image"] = processing.image.model_dump(mode="json", exclude_none=True)
    if processing.text is not None:
        text = processing.text.model_dump(mode="json", exclude_none=True)
        text["tokenizer"] = f"{PROCESSING_DIR}/tokenizer.json"
        doc["text"] = text
    if processing.output is not None:
        doc["output"] = processing.output.model_dump(mode="json", exclude_none=True)
    if processing.handler is not None:
        doc["handler"] = f"{PROCESSING_DIR}/{processing.handler.name}"
    if processing.options:
        doc["options"] = processing.options
    if processing.content_types:
        doc["content_types"] = list(processing.content_types)
    if raw_example(model):
        assert isinstance(model.example, Path)
        doc["example"] = {
            "file": f"{PROCESSING_DIR}/example{model.example.suffix.lower()}",
            "content_type": example_content_type(model),
        }
    return doc


def bundle_digest(model: ModelConfig, *, artifact: Path | None = None, sha256: str | None = None) -> str:
    """The model's content hash: the graph's SHA-256 alone for a plain model (so its version stays what it
    was), else over the graph, its external data, its processing files and the processing config."""
    graph = sha256 or file_sha256(artifact or model.artifact)
    files = bundle_files(model, artifact=artifact)
    extra = {k: v for k, v in files.items() if k not in (ARTIFACT_FILE, REQUIREMENTS_FILE)}
    if not extra and model.processing is None:
        return graph
    digest = hashlib.sha256(graph.encode())
    for rel, src in sorted(extra.items()):
        data = src if isinstance(src, bytes) else src.read_bytes()
        digest.update(f"\0{rel}\0{hashlib.sha256(data).hexdigest()}".encode())
    digest.update(json.dumps(processing_doc(model), sort_keys=True).encode())
    requirements = files[REQUIREMENTS_FILE]
    assert isinstance(requirements, bytes)
    digest.update(requirements)
    return digest.hexdigest()


def model_spec(model: ModelConfig, *, sha256: str | None = None, artifact: Path | None = None) -> ModelSpec:
    """The runtime's view of a configured model (what ``mdk-model.json`` holds).

    ``artifact`` stands for another file of the same model (a SageMaker variant's): its version is then
    its own hash, unless the config names the model's version.
    """
    digest = sha256 or file_sha256(artifact or model.artifact)
    schema = model.schema_
    content = bundle_digest(model, artifact=artifact, sha256=digest)
    return ModelSpec(
        name=model.name,
        version=(model.version if artifact is None else None) or content[:12],
        sha256=digest,
        artifact=ARTIFACT_FILE,
        description=model.description,
        labels=None if schema.labels is None else tuple(schema.labels),
        inputs={
            name: InputOverride(
                alias=o.alias, dtype=o.dtype, shape=None if o.shape is None else tuple(o.shape)
            )
            for name, o in schema.inputs.items()
        },
        batched=schema.batched,
        classifier=None
        if schema.classifier is None
        else ClassifierOverride(schema.classifier.label_output, schema.classifier.probabilities_output),
        max_instances=schema.max_instances,
        example=load_example(model),
        processing=processing_doc(model),
    )


def write_bundle(model: ModelConfig, dest: Path) -> Path:
    """Write ``dest/model.onnx`` and ``dest/mdk-model.json``; unchanged files are left untouched.

    Leaving identical files alone keeps their mtimes, so image builds and asset hashes only change
    when the model or its spec does.
    """
    _make_dirs(dest)
    digest = file_sha256(model.artifact)
    files = bundle_files(model)
    for rel, source in files.items():
        target = dest / rel
        _make_dirs(target.parent, stop=dest)
        if isinstance(source, bytes):
            if not target.is_file() or target.read_bytes() != source:
                _atomic_write(target, source)
            elif target.stat().st_mode & 0o777 != FILE_MODE:
                target.chmod(FILE_MODE)
            continue
        want = digest if rel == ARTIFACT_FILE else file_sha256(source)
        if not target.is_file() or file_sha256(target) != want:
            _atomic_copy(source, target)
        elif target.stat().st_mode & 0o777 != FILE_MODE:
            target.chmod(FILE_MODE)  # written by an older kit (0600): same bytes, readable now
    doc = json.dumps(model_spec(model, sha256=digest).to_json(), indent=2, sort_keys=True) + "\n"
    spec_path = dest / SPEC_FILE
    if not spec_path.is_file() or spec_path.read_text(encoding="utf-8") != doc:
        _atomic_write(spec_path, doc.encode("utf-8"))
    elif spec_path.stat().st_mode & 0o777 != FILE_MODE:
        spec_path.chmod(FILE_MODE)
    wanted = {*files, SPEC_FILE}
    for path in sorted(dest.rglob("*"), reverse=True):  # what an earlier config shipped and this one does not
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return dest


#: Modes of what the kit writes into bundles, build contexts and archives. Docker's COPY keeps a file's
#: mode, and Lambda runs a container image's function as a non-root user ("Lambda runs as a default Linux
#: user with least-privileged permissions ... ensure that your files are readable by the default Lambda
#: user": "Create a Lambda function using a container image",
#: https://docs.aws.amazon.com/lambda/latest/dg/images-create.html), so everything must be world-readable
#: whatever the writing process's umask (``mkstemp`` alone gives 0600).
FILE_MODE = 0o644
DIR_MODE = 0o755


def _atomic_copy(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, dest)


def _atomic_write(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, dest)


def _make_dirs(path: Path, *, stop: Path | None = None) -> None:
    """``mkdir -p`` with mode 0755 for every directory it creates (and ``path`` itself), umask or not."""
    missing: list[Path] = []
    current = path
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        current = current.parent
    path.mkdir(parents=True, exist_ok=True)
    for directory in [path, *missing]:
        if stop is not None and not directory.is_relative_to(stop):
            continue
        if directory.stat().st_mode & 0o777 != DIR_MODE:
            directory.chmod(DIR_MODE)


def image_context_files() -> dict[str, Path]:
    """Path in the context -> source file, for the Lambda image (without the model)."""
    files = {
        "Dockerfile": LAMBDA_DOCKERFILE,
        "layers/requirements.txt": LAYERS_DIR / "requirements.txt",
        "layers/constraints.txt": LAYERS_DIR / "constraints.txt",
    }
    for source in sorted(RUNTIME_DIR.glob("*.py")):
        files[f"layers/python/mdk_runtime/{source.name}"] = source
    for name in INFERENCE_MODULES:
        files[f"lambda_handlers/{name}"] = HANDLERS_DIR / name
    return files


def sagemaker_context_files() -> dict[str, Path]:
    """Path in the context -> source file, for the SageMaker serving image (both device builds)."""
    files = {
        "Dockerfile": SAGEMAKER_DIR / "Dockerfile",
        "layers/constraints.txt": LAYERS_DIR / "constraints.txt",
        "sagemaker_endpoints/requirements-cpu.txt": SAGEMAKER_DIR / "requirements-cpu.txt",
        "sagemaker_endpoints/requirements-gpu.txt": SAGEMAKER_DIR / "requirements-gpu.txt",
    }
    for source in sorted(RUNTIME_DIR.glob("*.py")):
        files[f"layers/python/mdk_runtime/{source.name}"] = source
    for name in SAGEMAKER_MODULES:
        files[f"sagemaker_endpoints/{name}"] = SAGEMAKER_DIR / name
    return files


def write_image_context(model: ModelConfig, dest: Path) -> Path:
    """The build context of one model's Lambda image: Dockerfile, runtime, handler, bundle in ``model/``."""
    write_bundle(model, dest / IMAGE_MODEL_DIR)
    sync_files(image_context_files(), dest, keep=(IMAGE_MODEL_DIR,))
    return dest


def write_function_context(modules: dict[str, Path], dest: Path) -> Path:
    """The code of a zip-packaged function: exactly ``modules`` (path in the zip -> source)."""
    sync_files(modules, dest)
    return dest


def sync_files(files: dict[str, Path], dest: Path, *, keep: tuple[str, ...] = ()) -> None:
    """Make ``dest`` hold exactly ``files`` (plus the ``keep`` subtrees); unchanged files stay untouched."""
    _make_dirs(dest)
    wanted = set(files)
    for rel, source in files.items():
        target = dest / rel
        data = source.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            _make_dirs(target.parent, stop=dest)
            _atomic_write(target, data)
        elif target.stat().st_mode & 0o777 != FILE_MODE:
            target.chmod(FILE_MODE)  # written by an older kit (0600): same bytes, readable now
    for path in sorted(dest.rglob("*"), reverse=True):
        rel = path.relative_to(dest).as_posix()
        if rel.split("/", 1)[0] in keep:
            continue
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def write_model_tarball(model: ModelConfig, dest: Path, *, artifact: Path | None = None) -> Path:
    """``model.tar.gz`` for SageMaker (unpacked into /opt/ml/model): the bundle, byte-identical when
    nothing changed (fixed order, owners, modes and times), so its asset hash does not move."""
    spec = model_spec(model, artifact=artifact)
    # No requirements.txt: one serving image serves every SageMaker model, with the processing packages
    # installed (sagemaker_endpoints/requirements-*.txt); a plain model's archive stays byte-identical.
    members = {
        rel: src if isinstance(src, bytes) else src.read_bytes()
        for rel, src in bundle_files(model, artifact=artifact).items()
        if rel != REQUIREMENTS_FILE
    }
    members[SPEC_FILE] = (json.dumps(spec.to_json(), indent=2, sort_keys=True) + "\n").encode()
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.read_bytes() != data:
        _atomic_write(dest, data)
    return dest


# -- batch functions ---------------------------------------------------------------------------------

# The zip-packaged batch functions (trigger, status, the prediction store's GET route).
BATCH_MODULES = ("__init__.py", "batch_aws.py", "batch_trigger.py", "batch_status.py", "predictions.py")
# What their layer holds: the runtime's standard-library modules, and Powertools with its dependencies
# (pure Python, copied from this environment's locked install: no download, no Docker at synth).
LAYER_RUNTIME_MODULES = ("__init__.py", "batch.py", "errors.py", "instances.py", "manifest.py", "media.py")
LAYER_DISTRIBUTIONS = ("aws-lambda-powertools", "jmespath", "typing-extensions")


def batch_topology(model: ModelConfig, transform_model: str) -> BatchTopology | None:
    """The batch member of a model's registry entry (None: it takes no batch files), which the batch
    trigger and status functions read at run time (``lambda_handlers.batch_aws.BatchModel``):
    ``transform_model`` is the SageMaker model its transform jobs run (a token in the stack)."""
    b = model.batch
    if not b.enabled:
        return None
    return BatchTopology(
        transform_model=transform_model,
        instance_type=b.instance_type,
        instance_count=b.instance_count,
        max_payload_mb=b.max_payload_mb,
        max_concurrent_transforms=b.max_concurrent_transforms,
        invocation_timeout_s=b.invocation_timeout_s,
        invocation_retries=b.invocation_retries,
        id_field=b.id_field,
        features_field=b.features_field,
        store=b.store is not None,
        store_ttl_days=b.store.ttl_days if b.store is not None else None,
    )


def write_batch_function_context(dest: Path) -> Path:
    """The code of the batch functions: their modules alone, the same whatever the models are (each
    model's batch settings are in its registry entry)."""
    sync_files({f"lambda_handlers/{name}": HANDLERS_DIR / name for name in BATCH_MODULES}, dest)
    return dest


def batch_layer_files() -> dict[str, Path]:
    """Path in the layer -> source file (``python/`` is what Lambda puts on the path)."""
    files = {f"python/mdk_runtime/{name}": RUNTIME_DIR / name for name in LAYER_RUNTIME_MODULES}
    for name in LAYER_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        for entry in dist.files or []:
            rel = entry.as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or rel.startswith(".."):
                continue
            if ".dist-info/" in rel and not rel.endswith(("/METADATA", "/LICENSE", "/licenses")):
                continue  # RECORD, INSTALLER, direct_url.json: facts about this machine's install
            files[f"python/{rel}"] = Path(str(dist.locate_file(entry)))
    return files


def write_batch_layer(dest: Path) -> Path:
    sync_files(batch_layer_files(), dest)
    return dest
