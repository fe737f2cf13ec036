"""Real pretrained example models, copied at build time from the PyPI wheels that ship them.

* ``text-direction/v1``: PaddleOCR's text-line direction classifier (0 or 180 degrees), from
  ``rapidocr_onnxruntime``; served with declared image processing only (no code).
* ``ocr-line/v1``: PaddleOCR's PP-OCRv4 text-line recogniser (CTC; its character dictionary is in the
  graph's ``metadata_props``), from ``rapidocr_onnxruntime``; served with a handler
  (``models/ocr-line/handler.py``).
* ``file-type/v1``: Google's Magika file-type detector, from ``magika``, with the model's own
  ``config.min.json`` and the package's content-type table; served with a handler
  (``models/file-type/handler.py``) that takes a file's raw bytes.

The graphs are not ours to commit (and are megabytes): they are copied from the installed wheel into
``models/<name>/v1/`` (git-ignored), checked against the wheel's ``RECORD`` hashes, with a committed
``card.json`` saying where each came from, its licence, SHA-256 and what it does. The small JSON files
a handler reads are copied beside the graph and committed, so a review sees what ships. Files whose bytes
are already there are left untouched (same mtime), so a rerun changes nothing.

Real example inputs, made offline and committed (``--samples`` rewrites them): text lines rendered with
Pillow's bundled font, upright and turned 180 degrees, and a few real files of different types.
Run ``python -m mdk.pretrained`` (``make models`` does, through ``python -m mdk.examples``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import hashlib
import importlib.metadata
import importlib.resources
import io
import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "models"
VERSION = "v1"


@dataclass(frozen=True)
class Shipped:
    """One file of a wheel: where it is in the installed package, and its name in ``models/<name>/v1/``."""

    source: str  # path inside the import package, e.g. "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
    target: str  # e.g. "model.onnx"


@dataclass(frozen=True)
class Pretrained:
    """A real model: the distribution that ships it, its files, and what it does."""

    name: str
    distribution: str  # the PyPI distribution, as importlib.metadata names it
    package: str  # its import package, where the files are
    files: tuple[Shipped, ...]  # the first is the graph (model.onnx)
    task: str
    origin: str
    processing: str

    @property
    def directory(self) -> Path:
        return MODELS_DIR / self.name / VERSION


PRETRAINED = (
    Pretrained(
        name="text-direction",
        distribution="rapidocr_onnxruntime",
        package="rapidocr_onnxruntime",
        files=(Shipped("models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "model.onnx"),),
        task=(
            "Whether a cropped text line is upright (label '0') or upside down ('180'): the direction "
            "classifier of an OCR pipeline, run between text detection and recognition."
        ),
        origin="PaddleOCR ch_ppocr_mobile_v2.0_cls (PaddlePaddle, converted with paddle2onnx by RapidOCR)",
        processing=(
            "declared (no code): BGR, scaled to 48 px high keeping the aspect, at most 192 wide, "
            "(x/255 - 0.5)/0.5, padded right with 0; classes 0/180 with scores"
        ),
    ),
    Pretrained(
        name="ocr-line",
        distribution="rapidocr_onnxruntime",
        package="rapidocr_onnxruntime",
        files=(Shipped("models/ch_PP-OCRv4_rec_infer.onnx", "model.onnx"),),
        task=(
            "The text in a cropped, upright text line (Chinese and Latin script, digits, punctuation): "
            "the recogniser of an OCR pipeline; CTC over 6,625 classes, the dictionary in the graph's "
            "metadata_props['character']."
        ),
        origin="PaddleOCR PP-OCRv4 ch_rec (PaddlePaddle, converted with paddle2onnx by RapidOCR)",
        processing=(
            "handler models/ocr-line/handler.py: BGR, 48 px high, width from the line's aspect "
            "(at least 320), (x/255 - 0.5)/0.5, padded right; greedy CTC decoding into text and score"
        ),
    ),
    Pretrained(
        name="file-type",
        distribution="magika",
        package="magika",
        files=(
            Shipped("models/standard_v3_3/model.onnx", "model.onnx"),
            Shipped("models/standard_v3_3/config.min.json", "config.min.json"),
            Shipped("config/content_types_kb.min.json", "content_types_kb.min.json"),
        ),
        task=(
            "The content type of a file from its bytes (214 types: source code, documents, images, "
            "archives, executables...), with its group and MIME type."
        ),
        origin="Google Magika standard_v3_3",
        processing=(
            "handler models/file-type/handler.py: the first and last 1,024 bytes after stripping "
            "whitespace, padded with 256; the package's thresholds, overwrite map and its rules for "
            "empty and very small files"
        ),
    ),
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel_hash(distribution: str, package: str, source: str) -> str | None:
    """The file's SHA-256 as the wheel's RECORD lists it (hex), or None where RECORD has none."""
    wanted = f"{package}/{source}"
    for entry in importlib.metadata.files(distribution) or ():
        if entry.as_posix() == wanted and entry.hash is not None and entry.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            return raw.hex()
    return None


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` unless the file already holds exactly it (then its mtime stays); True if written."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def _field(meta: Any, key: str) -> str:
    values = meta.get_all(key) or []
    return str(values[0]) if values else ""


def _licence(meta: Any) -> str:
    return _field(meta, "License-Expression") or _field(meta, "License") or "unknown"


def _graph_facts(path: Path) -> dict[str, Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "type": t.type, "shape": list(t.shape)} for t in items]

    props = session.get_modelmeta().custom_metadata_map
    return {
        "inputs": tensors(session.get_inputs()),
        "outputs": tensors(session.get_outputs()),
        "metadata_props": sorted(props),
    }


def build(model: Pretrained) -> list[Path]:
    """Copy the model's files from the installed wheel and write its card; returns the files written."""
    try:
        version = importlib.metadata.version(model.distribution)
        meta = importlib.metadata.metadata(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"{model.name}: the {model.distribution} package is not installed; `make setup` installs it "
            "(requirements-dev.txt)"
        ) from None
    root = importlib.resources.files(model.package)
    written: list[Path] = []
    copied: list[dict[str, Any]] = []
    for shipped in model.files:
        data = (root / shipped.source).read_bytes()
        digest = _sha256(data)
        recorded = _wheel_hash(model.distribution, model.package, shipped.source)
        if recorded is not None and recorded != digest:
            raise RuntimeError(
                f"{model.name}: {model.package}/{shipped.source} does not match the hash in the "
                f"{model.distribution} wheel's RECORD; reinstall the package"
            )
        target = model.directory / shipped.target
        if _write_if_changed(target, data):
            written.append(target)
        copied.append(
            {
                "file": shipped.target,
                "from": f"{model.package}/{shipped.source}",
                "sha256": digest,
                "bytes": len(data),
            }
        )
    card = {
        "name": model.name,
        "version": VERSION,
        "task": model.task,
        "origin": model.origin,
        "source": {
            "distribution": model.distribution,
            "version": version,
            "licence": _licence(meta),
            "homepage": _field(meta, "Home-page"),
        },
        "files": copied,
        "graph": _graph_facts(model.directory / model.files[0].target),
        "processing": model.processing,
        "copied_by": "python -m mdk.pretrained (make models); the graph is git-ignored, not ours to commit",
    }
    if _write_if_changed(model.directory / "card.json", (json.dumps(card, indent=2) + "\n").encode()):
        written.append(model.directory / "card.json")
    return written


# ------------------------------------------------------------------------------------------------
# Example inputs, made offline
# ------------------------------------------------------------------------------------------------

#: Text lines: (file under models/, text, font size in px, turned 180 degrees, ink, paper).
INK, PAPER = (20, 20, 20), (255, 255, 255)
TEXT_LINES = (
    ("text-direction/example.png", "Invoice 2024-06", 32, False, INK, PAPER),
    ("text-direction/samples/upright-small.png", "Hello world", 20, False, INK, PAPER),
    ("text-direction/samples/upside-down.png", "Hello world", 20, True, INK, PAPER),
    (
        "text-direction/samples/upside-down-large.png",
        "Models ship with their processing",
        56,
        True,
        INK,
        PAPER,
    ),
    ("text-direction/samples/digits-upside-down.png", "1961", 40, True, INK, PAPER),
    # Blue on amber: a model fed RGB instead of BGR scores this one very differently (0.57 against 0.996).
    ("text-direction/samples/coloured.png", "SOS", 32, False, (30, 60, 220), (250, 200, 60)),
    ("ocr-line/example.png", "Invoice 2024-06", 32, False, INK, PAPER),
    ("ocr-line/samples/sentence.png", "Models ship with their processing", 40, False, INK, PAPER),
    ("ocr-line/samples/small.png", "Hello world", 20, False, INK, PAPER),
    ("ocr-line/samples/numbers.png", "Total: 1,234.56 EUR", 28, False, INK, PAPER),
    ("ocr-line/samples/large.png", "ONNX Runtime", 72, False, INK, PAPER),
)
_FIXED_TIME = dt.datetime(
    2024, 6, 1, tzinfo=dt.UTC
)  # PDF and zip timestamps: rebuilding gives the same bytes


def text_line(
    text: str,
    size: int,
    *,
    upside_down: bool = False,
    ink: tuple[int, int, int] = INK,
    paper: tuple[int, int, int] = PAPER,
) -> bytes:
    """A PNG of one line of text, as a text detector would crop it (8 px margin)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)  # Pillow's bundled font (Aileron), no system fonts needed
    left, top, right, bottom = font.getbbox(text)
    margin = 8
    box = (int(right - left) + 2 * margin, int(bottom - top) + 2 * margin)
    image = Image.new("RGB", box, paper)
    ImageDraw.Draw(image).text((margin - left, margin - top), text, font=font, fill=ink)
    if upside_down:
        image = image.rotate(180)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 64), (240, 244, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, 40, 56), fill=(30, 90, 200))
    draw.ellipse((48, 12, 88, 52), fill=(220, 80, 40))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _pdf() -> bytes:
    from PIL import Image

    page = Image.open(io.BytesIO(text_line("A one-page PDF written by Pillow", 28))).convert("RGB")
    out = io.BytesIO()
    stamp = _FIXED_TIME.utctimetuple()
    page.save(out, "PDF", resolution=72.0, title="mdk sample", creationDate=stamp, modDate=stamp)
    return out.getvalue()


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("models/iris/v1/card.json", "models/digits/v1/card.json"):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (REPO / name).read_bytes())
    return out.getvalue()


def _html() -> bytes:
    return b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>mdk: models that ship with their processing</title>
  <link rel="stylesheet" href="/static/site.css">
  <style>
    body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }
    code { background: #f4f4f4; padding: 0 0.2rem; }
  </style>
</head>
<body>
  <header>
    <nav><a href="/">Home</a> | <a href="/docs">Docs</a> | <a href="/models">Models</a></nav>
    <h1>Serve ONNX models with their processing</h1>
  </header>
  <main>
    <p>Each model ships with the code that turns an image, a text or a file into its tensors,
       so every client gets the same answer.</p>
    <table>
      <thead><tr><th>Model</th><th>Input</th><th>Answer</th></tr></thead>
      <tbody>
        <tr><td>text-direction</td><td>a text line (PNG)</td><td>0 or 180 degrees</td></tr>
        <tr><td>ocr-line</td><td>a text line (PNG)</td><td>its text</td></tr>
        <tr><td>file-type</td><td>any file</td><td>its content type</td></tr>
      </tbody>
    </table>
    <form action="/models/file-type/predict" method="post" enctype="multipart/form-data">
      <label for="file">File</label> <input type="file" id="file" name="file">
      <button type="submit">Identify</button>
    </form>
  </main>
  <footer><p>Apache-2.0</p></footer>
  <script src="/static/app.js" defer></script>
</body>
</html>
"""


def _json() -> bytes:
    card = json.loads((REPO / "models/iris/v1/card.json").read_text(encoding="utf-8"))
    return (json.dumps(card, indent=2) + "\n").encode()


#: Files of different types for the file-type model (under models/file-type/).
FILES: dict[str, Callable[[], bytes]] = {
    "samples/media.py": (REPO / "layers/python/mdk_runtime/media.py").read_bytes,
    "samples/shapes.png": _png,
    "samples/card.json": _json,
    "samples/page.pdf": _pdf,
    "samples/cards.zip": _zip,
    "samples/index.html": _html,
}
FILE_TYPE_EXAMPLE = "samples/page.pdf"


def write_samples(*, force: bool = False) -> list[Path]:
    """Write the example inputs that are missing (all with ``force``); committed, so a fresh clone has them.

    Missing-only by default: a text line rendered by another Pillow/FreeType may differ in its bytes, and
    the committed files are what the tests and the docs use.
    """
    written = []
    jobs: list[tuple[Path, Callable[[], bytes]]] = [
        (MODELS_DIR / rel, functools.partial(text_line, text, size, upside_down=turned, ink=ink, paper=paper))
        for rel, text, size, turned, ink, paper in TEXT_LINES
    ]
    jobs += [(MODELS_DIR / "file-type" / rel, make) for rel, make in FILES.items()]
    for path, make in jobs:
        if path.is_file() and not force:
            continue
        if _write_if_changed(path, make()):
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", action="store_true", help="rewrite the committed example inputs too")
    args = parser.parse_args(argv)
    for model in PRETRAINED:
        for path in build(model):
            print(f"copied {path.relative_to(REPO)}")
    for path in write_samples(force=args.samples):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
