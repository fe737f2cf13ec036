"""Size checks at config time (mdk/sizing.py): external data counted, Lambda's image and memory limits, the
SageMaker instance types' memory, the processing libraries measured from the installed distributions.

Big artifacts are cheap here: a graph whose weights live in an external-data file, that file then made
sparse at the wanted size (its bytes are never written, and the checks only stat it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

from mdk import sizing
from mdk.config import ModelConfig, parse_config

GB = 10**9
MIB = 2**20


def weights_model(directory: Path, *, floats: int = 1024, location: str | None = "model.onnx.data") -> Path:
    """``y = x + w`` with ``floats`` float32 weights, in an external-data file unless ``location`` is None."""
    directory.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.arange(floats, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [floats])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [floats])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / "model.onnx"
    if location is None:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(model, str(path), save_as_external_data=True, location=location, size_threshold=0)
    return path


def sparse_weights(directory: Path, size: int) -> Path:
    """A model whose external data file is ``size`` bytes (sparse: nothing written)."""
    path = weights_model(directory)
    os.truncate(directory / "model.onnx.data", size)
    return path


def model_config(artifact: Path, **fields: Any) -> ModelConfig:
    entry = {"name": "big", "artifact": str(artifact), "runtime": "lambda", **fields}
    config = parse_config({"models": [entry]}, base_dir=artifact.parent, check_models=False)
    return config.models[0]


# ------------------------------------------------------------------------------------------ the artifact


def test_external_data_is_found_and_counted(tmp_path: Path) -> None:
    artifact = weights_model(tmp_path / "m", floats=250_000)
    data = tmp_path / "m" / "model.onnx.data"
    assert sizing.external_data_files(artifact) == [data.resolve()]
    assert sizing.artifact_bytes(artifact) == artifact.stat().st_size + 1_000_000
    assert artifact.stat().st_size < 1000  # the weights are not in the .onnx file itself
    # The same graph inline: no external data, the same total within the protobuf framing.
    inline = weights_model(tmp_path / "inline", floats=250_000, location=None)
    assert sizing.external_data_files(inline) == []
    assert abs(sizing.artifact_bytes(inline) - sizing.artifact_bytes(artifact)) < 200


def test_external_data_in_a_subgraph_is_found(tmp_path: Path) -> None:
    """A Constant inside an If branch keeps its tensor in an attribute of a node of a subgraph."""
    value = numpy_helper.from_array(np.ones(4096, dtype=np.float32), "c")
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["out"], value=value)],
        "then",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4096])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)],
        "branches",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    convert_model_to_external_data(model, location="branch.bin", size_threshold=0, convert_attribute=True)
    onnx.save_model(model, str(path))
    assert (tmp_path / "branch.bin").stat().st_size == 2 * 4096 * 4  # both branches
    assert sizing.external_data_files(path) == [(tmp_path / "branch.bin").resolve()]


def test_a_missing_external_data_file_is_an_artifact_problem(tmp_path: Path) -> None:
    artifact = weights_model(tmp_path)
    (tmp_path / "model.onnx.data").unlink()
    problems = sizing.check_sizes(model_config(artifact))
    assert problems == ["artifact: external data file not found: model.onnx.data (tensor 'w')"]


def test_external_data_outside_the_models_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.data").write_bytes(b"\0" * 4096)
    artifact = weights_model(tmp_path / "m")
    model = onnx.load(str(artifact), load_external_data=False)  # onnx itself writes no such location
    [entry] = [e for e in model.graph.initializer[0].external_data if e.key == "location"]
    entry.value = "../outside.data"
    artifact.write_bytes(model.SerializeToString())
    [problem] = sizing.check_sizes(model_config(artifact))
    assert problem.startswith("artifact: external data '../outside.data' of tensor 'w' is outside ")


# ------------------------------------------------------------------------------------------ Lambda


def test_a_small_model_fits_lambdas_smallest_function(tmp_path: Path) -> None:
    assert sizing.check_sizes(model_config(weights_model(tmp_path), **{"lambda": {"memory_mb": 128}})) == []


def test_a_110_mb_model_needs_more_than_the_smallest_function(tmp_path: Path) -> None:
    """A real 110 MB file (written, loaded by onnxruntime), so the estimate is of something that runs."""
    artifact = weights_model(tmp_path, floats=27_500_000)
    assert sizing.artifact_bytes(artifact) > 110 * 10**6
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [27_500_000]
    [problem] = sizing.check_sizes(model_config(artifact, **{"lambda": {"memory_mb": 128}}))
    needed = sizing.memory_needed(sizing.artifact_bytes(artifact), processing=False)
    assert needed > 128 * MIB
    wanted = -(-needed // MIB)
    assert problem.startswith("lambda.memory_mb: 128 MB is less than the model needs, about ")
    assert problem.endswith(f"; set lambda.memory_mb to at least {wanted}")
    assert "the model's 105 MB x 1.5 (onnxruntime's working memory)" in problem
    assert sizing.check_sizes(model_config(artifact, **{"lambda": {"memory_mb": wanted}})) == []
    assert sizing.check_sizes(model_config(artifact, **{"lambda": {"memory_mb": wanted - 1}})) != []


def test_a_model_beyond_lambdas_largest_function_points_to_sagemaker(tmp_path: Path) -> None:
    artifact = sparse_weights(tmp_path, 7_500_000_000)
    problems = sizing.check_sizes(
        model_config(artifact, **{"lambda": {"memory_mb": 10_240}}, batch={"enabled": False})
    )
    assert [p.split(":")[0] for p in problems] == ["lambda.memory_mb"]
    assert problems[0].endswith("more than Lambda's most (10240 MB): use runtime: sagemaker")


def test_an_image_over_10_gb_is_refused_with_its_parts(tmp_path: Path) -> None:
    artifact = sparse_weights(tmp_path, int(9.5 * GB))
    problems = sizing.check_sizes(model_config(artifact, **{"lambda": {"memory_mb": 10_240}}))
    image = [p for p in problems if p.startswith("artifact:")]
    assert len(image) == 1, problems
    assert "the Lambda image would be about 10." in image[0]
    assert "over Lambda's 10 GB limit for a container image" in image[0]
    # Just under: the image fits (the memory does not, which is its own problem).
    fits = sparse_weights(tmp_path / "smaller", 8 * GB)
    problems = sizing.check_sizes(model_config(fits, **{"lambda": {"memory_mb": 10_240}}))
    assert not [p for p in problems if p.startswith("artifact:")]


def test_the_image_estimate_adds_its_parts(tmp_path: Path) -> None:
    sizes = sizing.estimate(model_config(weights_model(tmp_path)))
    assert sizes.image_bytes == (
        sizes.base_image_bytes + sizes.runtime_bytes + sizes.processing_bytes + sizes.artifact_bytes
    )
    # The runtime's dependencies, measured from this environment: onnxruntime and numpy alone are tens of MB.
    assert sizes.runtime_bytes > 50 * MIB
    assert sizes.processing_packages == ()
    assert sizes.processing_bytes == 0


# ------------------------------------------------------------------------------------------ processing


def test_image_processing_counts_pillow_installed_here(tmp_path: Path) -> None:
    artifact = weights_model(tmp_path)
    sizes = sizing.estimate(model_config(artifact, processing={"image": {}}))
    assert sizes.processing_packages == ("pillow",)
    assert sizes.processing_bytes == sizing.installed_bytes(["pillow"]) > 5 * MIB
    assert sizes.memory_bytes == sizing.memory_needed(sizes.artifact_bytes, processing=True)
    assert sizes.memory_bytes > sizing.memory_needed(sizes.artifact_bytes, processing=False)


def test_text_processing_counts_tokenizers_and_its_dependencies_not_the_runtimes(tmp_path: Path) -> None:
    artifact = weights_model(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    sizes = sizing.estimate(model_config(artifact, processing={"text": {"tokenizer": "tokenizer.json"}}))
    assert "tokenizers" in sizes.processing_packages
    assert "huggingface-hub" in sizes.processing_packages  # tokenizers' own requirement
    assert "numpy" not in sizes.processing_packages  # in the runtime already
    assert sizes.processing_bytes > sizing.installed_bytes(["tokenizers"])


def test_a_handlers_requirements_not_installed_here_are_listed_unmeasured(tmp_path: Path) -> None:
    artifact = weights_model(tmp_path)
    (tmp_path / "handler.py").write_text("def preprocess(request, context):\n    return request\n")
    (tmp_path / "requirements.txt").write_text(
        "# the handler's own\npillow==13.0.0\nno-such-distribution-mdk==1.0 ; python_version >= '3'\n"
        "--extra-index-url https://example.invalid/simple\n"
    )
    processing = {"handler": "handler.py", "requirements": "requirements.txt"}
    sizes = sizing.estimate(model_config(artifact, processing=processing))
    assert sizes.processing_packages == ("pillow",)
    assert sizes.unmeasured == ("no-such-distribution-mdk",)


# ------------------------------------------------------------------------------------------ SageMaker


def sagemaker_model(artifact: Path, instance_type: str, **fields: Any) -> ModelConfig:
    return model_config(
        artifact,
        runtime="sagemaker",
        sagemaker={"instance_type": instance_type, **fields},
        batch={"enabled": False},
    )


def test_an_instance_type_without_the_memory_is_named(tmp_path: Path) -> None:
    artifact = sparse_weights(tmp_path, 3 * GB)
    [problem] = sizing.check_sizes(sagemaker_model(artifact, "ml.c5.large"))
    assert problem.startswith("sagemaker.instance_type: ml.c5.large has 4 GiB of memory, ")
    assert problem.endswith("choose an instance type with more memory")
    assert sizing.check_sizes(sagemaker_model(artifact, "ml.m5.xlarge")) == []


def test_an_unknown_instance_type_skips_the_check(tmp_path: Path) -> None:
    artifact = sparse_weights(tmp_path, 300 * GB)
    assert sizing.check_sizes(sagemaker_model(artifact, "ml.zz9.huge")) == []


def test_a_gpu_instance_checks_the_gpus_memory_too(tmp_path: Path) -> None:
    artifact = sparse_weights(tmp_path, 18 * GB)
    size = sizing.artifact_bytes(artifact)
    problems = sizing.check_sizes(sagemaker_model(artifact, "ml.g5.12xlarge"))  # 192 GiB host, 24 GiB GPU
    assert problems == [
        f"sagemaker.instance_type: the model's {size / MIB:,.0f} MB x 1.5 (onnxruntime's working memory) "
        "does not fit the 24 GiB of GPU memory of ml.g5.12xlarge"
    ]
    assert (
        sizing.check_sizes(sagemaker_model(sparse_weights(tmp_path / "b", 15 * GB), "ml.g5.12xlarge")) == []
    )


def test_variants_are_checked_with_their_own_artifact_and_type(tmp_path: Path) -> None:
    small = weights_model(tmp_path / "small")
    big = sparse_weights(tmp_path / "big", 3 * GB)
    model = sagemaker_model(
        small,
        "ml.m5.large",
        variants=[
            {"name": "challenger", "artifact": str(big), "instance_type": "ml.m5.xlarge"},
            {"name": "cheap", "artifact": str(big), "instance_type": "ml.c5.large"},
        ],
    )
    problems = sizing.check_sizes(model)
    assert [p.split(":")[0] for p in problems] == ["sagemaker.variants[1].instance_type"]


def test_batch_transform_instances_are_checked_for_lambda_models_too(tmp_path: Path) -> None:
    artifact = sparse_weights(tmp_path, 3 * GB)
    model = model_config(
        artifact, **{"lambda": {"memory_mb": 10_240}}, batch={"instance_type": "ml.c5.large"}
    )
    assert [p.split(":")[0] for p in sizing.check_sizes(model)] == ["batch.instance_type"]


@pytest.mark.parametrize("instance_type", sorted(sizing.SAGEMAKER_GPU_MEMORY_GIB))
def test_every_gpu_type_has_its_host_memory(instance_type: str) -> None:
    assert instance_type in sizing.SAGEMAKER_MEMORY_GIB


def test_config_validation_reports_size_problems_by_field(tmp_path: Path) -> None:
    """`mdk config validate` / synth: the size check runs with the rest, before the graph is loaded."""
    from mdk.config import ConfigError

    artifact = sparse_weights(tmp_path, 12 * 1024**3)  # 12 GB of external data (nothing written)
    entry = {"name": "big", "artifact": str(artifact), "runtime": "lambda", "lambda": {"memory_mb": 10240}}
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [entry]}, base_dir=tmp_path)
    problems = caught.value.problems
    assert any(p.startswith("models[0].artifact: the Lambda image would be about") for p in problems)
    assert any(p.startswith("models[0].lambda.memory_mb: 10240 MB is less than") for p in problems)
