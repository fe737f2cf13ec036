"""The kit's images as recipes: the Lambda model image, the SageMaker serving image, the benchmark's bare
image, and the image of a zip-packaged function.

The first three render the committed Dockerfiles (``python -m mdk.images`` rewrites them; a test checks
they are renderings). A zip function has no Dockerfile: Lambda builds its sandbox from the zip and its
layers on the managed runtime, which :func:`zip_function` describes for the stager.
"""

# ruff: noqa: E501, S108 (the Dockerfiles' own comment lines; image paths under /tmp, in the image)
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mdk.images.recipe import Arg, Blank, Comment, Compile, Copy, Env, Expose, Pip, Recipe, Workdir

LAMBDA_BASE = "public.ecr.aws/lambda/python:3.12"
TASK_ROOT = "${LAMBDA_TASK_ROOT}"
_RENDERED = "Rendered from mdk/images/kit.py by `python -m mdk.images`: edit the recipe there, not this file."

LAMBDA = Recipe(
    name="lambda_handlers/Dockerfile",
    header=Comment(
        "The Lambda image of one model: runtime dependencies, the shared runtime, the handler, the model.\n"
        "\n"
        "Build context: the repository root, or the per-model context `cdk synth` writes (the same layout\n"
        "with only what the image needs, so each model's asset hash covers exactly its own image). MODEL_DIR\n"
        "is a bundle directory inside it (model.onnx plus mdk-model.json, written by `mdk bundle`). The same\n"
        "file builds x86_64 and arm64 images:\n"
        "  docker build -f lambda_handlers/Dockerfile --build-arg MODEL_DIR=build/bundles/iris \\\n"
        "      --platform linux/arm64 -t iris .\n"
        f"{_RENDERED}\n"
        "Offline, tests and the local cloud execute the same recipe into a directory (no Docker) and run its\n"
        "CMD under the real Lambda Runtime Interface Emulator."
    ),
    base=LAMBDA_BASE,
    steps=(
        Blank(),
        Comment(
            "Third-party packages first: this layer changes only when the requirements or the lock do\n"
            "(MODEL_DIR is declared after it, so a new model does not invalidate the cached install)."
        ),
        Copy(("layers/requirements.txt", "layers/constraints.txt"), "/tmp/mdk/"),
        Pip.requirements("/tmp/mdk/requirements.txt", "/tmp/mdk/constraints.txt"),
        Blank(),
        Arg("MODEL_DIR"),
        Blank(),
        Copy(("layers/python/mdk_runtime",), f"{TASK_ROOT}/mdk_runtime"),
        Copy(("lambda_handlers",), f"{TASK_ROOT}/lambda_handlers"),
        Comment(
            "Bytecode now: /var/task is read-only in Lambda, so uncompiled sources are compiled at every cold\n"
            "start (~25 ms measured). Hash-based pycs do not depend on the files' modification times."
        ),
        Compile((f"{TASK_ROOT}/mdk_runtime", f"{TASK_ROOT}/lambda_handlers")),
        Comment(
            "The model's own packages (its processing's: Pillow for images, tokenizers for text, a handler's pins),\n"
            "into this model's image only; a comment-only file for a model without processing installs nothing."
        ),
        Copy(("${MODEL_DIR}/requirements.txt",), "/tmp/mdk/model-requirements.txt"),
        Pip.requirements("/tmp/mdk/model-requirements.txt", "/tmp/mdk/constraints.txt"),
        Copy(("${MODEL_DIR}",), f"{TASK_ROOT}/model"),
        Comment(
            "A handler module (processing.handler) is imported from the read-only task root too: compile it as well."
        ),
        Compile((f"{TASK_ROOT}/model",)),
        Blank(),
        Env(
            (
                ("MDK_MODEL_DIR", f"{TASK_ROOT}/model"),
                ("POWERTOOLS_SERVICE_NAME", "mdk-inference"),
                ("POWERTOOLS_METRICS_NAMESPACE", "mdk"),
            )
        ),
        Blank(),
    ),
    cmd=("lambda_handlers.inference.handler",),
)

SAGEMAKER = Recipe(
    name="sagemaker_endpoints/Dockerfile",
    header=Comment(
        "The kit's SageMaker serving container: real-time endpoints and batch transform, one image per device.\n"
        "  docker build -f sagemaker_endpoints/Dockerfile --build-arg DEVICE=gpu -t mdk-serving:gpu .\n"
        "  docker build -f sagemaker_endpoints/Dockerfile --build-arg DEVICE=cpu -t mdk-serving:cpu .\n"
        "Build context: the repository root, or the context `cdk synth` writes (the same layout, only what\n"
        "the image needs). The model is not in the image: SageMaker unpacks model.tar.gz into /opt/ml/model.\n"
        "GPU: CUDA and cuDNN come from NVIDIA's wheels (requirements-gpu.txt), so no CUDA base image is\n"
        "needed; the host's driver is mounted by the NVIDIA container runtime on GPU instances."
    ),
    base="python:3.12-slim-bookworm",
    steps=(
        Blank(),
        Arg("DEVICE", "cpu"),
        Env((("PYTHONUNBUFFERED", "1"), ("PIP_DISABLE_PIP_VERSION_CHECK", "1"))),
        Blank(),
        Copy(("sagemaker_endpoints/requirements-${DEVICE}.txt", "layers/constraints.txt"), "/tmp/mdk/"),
        Pip.requirements(
            "/tmp/mdk/requirements-${DEVICE}.txt",
            "/tmp/mdk/constraints.txt",
            target=None,
            then="rm -rf /tmp/mdk",
        ),
        Blank(),
        Copy(("layers/python/mdk_runtime",), "/opt/mdk/mdk_runtime"),
        Copy(
            tuple(
                f"sagemaker_endpoints/{name}"
                for name in ("__init__.py", "batching.py", "server.py", "serve.py")
            ),
            "/opt/mdk/sagemaker_endpoints/",
        ),
        Compile(("/opt/mdk",)),
        Blank(),
        Comment(
            "CPU images ask for the CPU provider only; GPU images for CUDA first, with a logged fallback to CPU."
        ),
        Env((("PYTHONPATH", "/opt/mdk"), ("MDK_MODEL_DIR", "/opt/ml/model"), ("MDK_DEVICE", "${DEVICE}"))),
        Workdir("/opt/mdk"),
        Expose(8080),
        Comment("SageMaker starts the container as `docker run <image> serve`."),
    ),
    entrypoint=("python", "-m", "sagemaker_endpoints.serve"),
    cmd=("serve",),
)

BARE = Recipe(
    name="bench/bare/Dockerfile",
    header=Comment(
        "The benchmark's baseline image: a bare onnxruntime handler on the same base, same pins, same model."
    ),
    base=LAMBDA_BASE,
    steps=(
        Copy(("bench/bare/requirements.txt", "layers/constraints.txt"), "/tmp/bare/"),
        Pip.requirements("/tmp/bare/requirements.txt", "/tmp/bare/constraints.txt"),
        Arg("MODEL_DIR"),
        Copy(("bench/bare/handler.py",), f"{TASK_ROOT}/"),
        Copy(("${MODEL_DIR}",), f"{TASK_ROOT}/model"),
        Env((("MDK_MODEL_DIR", f"{TASK_ROOT}/model"),)),
    ),
    cmd=("handler.handler",),
)

#: The recipes whose renderings are committed, by where they are.
RECIPES = {recipe.name: recipe for recipe in (LAMBDA, SAGEMAKER, BARE)}


def recipe_for(dockerfile: Path) -> Recipe:
    """The kit recipe ``dockerfile`` is a rendering of (a build context ``cdk synth`` wrote carries one)."""
    text = dockerfile.read_text(encoding="utf-8")
    for recipe in RECIPES.values():
        if recipe.render() == text:
            return recipe
    raise ValueError(
        f"{dockerfile} is not the rendering of a kit recipe ({', '.join(RECIPES)}): "
        "re-render it with `python -m mdk.images`, or stage a Recipe"
    )


def zip_function(handler: str, layers: Sequence[Path] = ()) -> tuple[Recipe, dict[str, Path]]:
    """A zip-packaged function on Lambda's Python runtime: each layer's ``python/`` (what Lambda puts on the
    path), then the code (the main build context), with ``handler`` as the CMD.

    Returns the recipe and the named contexts its layer steps copy from (the stager's ``contexts``).
    """
    contexts = {f"layer{index}": layer for index, layer in enumerate(layers) if (layer / "python").is_dir()}
    steps = [Copy(("python/",), f"{TASK_ROOT}/", context=name) for name in contexts]
    steps.append(Copy((".",), f"{TASK_ROOT}/"))
    return Recipe(name="zip function", base=LAMBDA_BASE, steps=tuple(steps), cmd=(handler,)), contexts
