"""Build the example models from scikit-learn's bundled data sets (no download).

* ``iris/v1``: standard scaling + logistic regression, the version deployed first;
* ``iris/v2``: gradient-boosted trees, the new version used to demonstrate rollouts;
* ``digits/v1``: a small multi-layer perceptron on 8x8 digit images, for the SageMaker path.

Each lands in ``models/<name>/<version>/`` as ``model.onnx``, ``card.json`` (the held-out accuracy
measured on the ONNX model through onnxruntime, which is what is served, and its agreement with
scikit-learn on the same rows) and ``example.json`` (a request with two held-out rows).
Run ``python -m mdk.examples`` (builds what is missing) or ``python -m mdk.examples --force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "models"
SEED = 0
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class Example:
    name: str
    version: str
    dataset: str
    algorithm: str
    input_name: str
    build: Callable[[], tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]]

    @property
    def directory(self) -> Path:
        return MODELS_DIR / self.name / self.version


def _iris() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data.astype(np.float32), data.target, test_size=0.3, stratify=data.target, random_state=SEED
    )
    return x_train, x_test, y_train, y_test, [str(n) for n in data.target_names]


def _iris_v1() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test, labels = _iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))
    return model.fit(x_train, y_train), x_train, x_test, y_train, y_test, labels


def _iris_v2() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from sklearn.ensemble import GradientBoostingClassifier

    x_train, x_test, y_train, y_test, labels = _iris()
    model = GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, random_state=SEED)
    return model.fit(x_train, y_train), x_train, x_test, y_train, y_test, labels


def _digits_v1() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data.astype(np.float32), data.target, test_size=0.25, stratify=data.target, random_state=SEED
    )
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=400, alpha=1e-3, random_state=SEED),
    )
    labels = [str(d) for d in range(10)]
    return model.fit(x_train, y_train), x_train, x_test, y_train, y_test, labels


EXAMPLES = (
    Example(
        "iris",
        "v1",
        "iris (scikit-learn, 150 rows)",
        "StandardScaler + LogisticRegression",
        "features",
        _iris_v1,
    ),
    Example(
        "iris", "v2", "iris (scikit-learn, 150 rows)", "GradientBoostingClassifier", "features", _iris_v2
    ),
    Example(
        "digits",
        "v1",
        "digits (scikit-learn, 1,797 8x8 images)",
        "StandardScaler + MLPClassifier(128, 64)",
        "pixels",
        _digits_v1,
    ),
)


def build(example: Example) -> dict[str, Any]:
    """Train, convert, check the ONNX model against scikit-learn, and write model.onnx + card.json."""
    import onnxruntime as ort
    import skl2onnx
    import sklearn
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    model, x_train, x_test, _y_train, y_test, labels = example.build()
    width = x_train.shape[1]
    onx = to_onnx(
        model,
        initial_types=[(example.input_name, FloatTensorType([None, width]))],
        final_types=[
            ("label", Int64TensorType([None])),
            ("probabilities", FloatTensorType([None, len(labels)])),
        ],
        options={"zipmap": False},
        target_opset=TARGET_OPSET,
    )
    onx.doc_string = (
        f"mdk example model {example.name}/{example.version}: {example.algorithm} on {example.dataset}"
    )
    # skl2onnx collects opsets in a set: sort them so rebuilding gives the same bytes.
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    example.directory.mkdir(parents=True, exist_ok=True)
    artifact = example.directory / "model.onnx"
    artifact.write_bytes(onx.SerializeToString(deterministic=True))

    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    onnx_label, onnx_proba = session.run(None, {example.input_name: x_test})
    sk_label = model.predict(x_test)
    accuracy = float(np.mean(onnx_label == y_test))
    agreement = float(np.mean(onnx_label == sk_label))
    max_proba_diff = float(np.max(np.abs(onnx_proba - model.predict_proba(x_test))))
    if agreement < 1.0 or max_proba_diff > 1e-4:
        raise RuntimeError(
            f"{example.name}/{example.version}: ONNX disagrees with scikit-learn "
            f"(label agreement {agreement:.4f}, max probability difference {max_proba_diff:.2e})"
        )
    card = {
        "name": example.name,
        "version": example.version,
        "dataset": example.dataset,
        "algorithm": example.algorithm,
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "test_accuracy": round(accuracy, 4),
        "onnx_sklearn_label_agreement": agreement,
        "onnx_sklearn_max_probability_difference": float(f"{max_proba_diff:.2e}"),
        "input": {"name": example.input_name, "dtype": "float32", "shape": [None, width]},
        "labels": labels,
        "built_with": {
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "opset": TARGET_OPSET,
            "split": f"stratified hold-out, random_state={SEED}",
        },
    }
    (example.directory / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    # A request with two held-out rows: the model's warm-up and smoke-test request in models.yaml.
    request = {"instances": x_test[:2].astype(np.float64).round(4).tolist()}
    (example.directory / "example.json").write_text(json.dumps(request) + "\n", encoding="utf-8")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild models that already exist")
    args = parser.parse_args(argv)
    for example in EXAMPLES:
        artifact = example.directory / "model.onnx"
        outputs = ("model.onnx", "card.json", "example.json")
        if all((example.directory / f).exists() for f in outputs) and not args.force:
            continue
        card = build(example)
        rel = artifact.relative_to(REPO)
        print(f"built {rel}: held-out accuracy {card['test_accuracy']:.4f} on {card['test_rows']} rows")
    # The real pretrained examples: graphs copied from their wheels (unchanged files left alone).
    from mdk import pretrained

    return pretrained.main([])


if __name__ == "__main__":
    sys.exit(main())
