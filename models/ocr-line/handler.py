"""PP-OCRv4 text-line recogniser: an image of one text line in, ``{"text": ..., "score": ...}`` out.

What RapidOCR's ``TextRecognizer`` (rapidocr_onnxruntime 1.4.4, ``ch_ppocr_rec/text_recognize.py``)
does for one crop, with Pillow instead of OpenCV:

* preprocess: the image as BGR, scaled to 48 px high keeping its aspect; the canvas is
  ``int(48 * max(320 / 48, w / h))`` wide and the line is ``min(canvas, ceil(48 * w / h))`` wide on
  it; ``(x / 255 - 0.5) / 0.5``; the rest of the canvas 0 (grey after normalising).
  OpenCV's ``cv2.resize`` (bilinear) samples the source without a low-pass filter when shrinking;
  Pillow's ``Image.resize`` filters (antialiases), which changes the pixels a lot for big crops. An
  affine ``Image.transform`` with bilinear sampling maps pixel centres as OpenCV does and gives the
  same pixels to within one grey level (rounding), so the recogniser reads the same text.
* postprocess: greedy CTC decoding (``CTCLabelDecode``): the best class per time step, repeats merged,
  blanks (class 0) dropped; the dictionary is the graph's ``metadata_props["character"]`` (one
  character a line) with the blank first and a space last; the score is the mean probability of the
  characters kept (0 when none is).

Each line is recognised on its own canvas: RapidOCR pads a batch of lines to the widest one, which can
change a line's scores in the last digits; here an answer depends on its own image only.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mdk_runtime.processing import Context, InvalidInput

HEIGHT = 48
MIN_WIDTH = 320  # rec_img_shape [3, 48, 320]: the canvas is at least this wide
MAX_PIXELS = 40_000_000  # refused before decoding (image bombs), as the kit's declared images are
FORMATS = ("JPEG", "PNG", "WEBP")


def load(context: Context) -> None:
    """The character dictionary, from the graph; a graph without one cannot be decoded."""
    chars = context.metadata.get("character")
    if not chars:
        raise ValueError("the graph has no metadata_props['character'] (the CTC dictionary)")
    max_width = int(context.options.get("max_width", 4096))
    if max_width < MIN_WIDTH:
        raise ValueError(f"options.max_width: expected at least {MIN_WIDTH}, got {max_width}")
    context.state = {"characters": ["blank", *chars.splitlines(), " "], "max_width": max_width}


def _image(data: Any) -> Image.Image:
    if not isinstance(data, bytes | bytearray):
        raise InvalidInput(
            "expected an image of a text line: a raw image/png, image/jpeg or image/webp body, "
            'or {"b64": "<base64>"} in JSON'
        )
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            w, h = opened.size
            if w * h > MAX_PIXELS:
                raise InvalidInput(f"the image is {w} x {h} pixels, over {MAX_PIXELS:,}; crop the text line")
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInput("not a readable image; send a PNG, JPEG or WebP of one text line") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def preprocess(instance: Any, context: Context) -> dict[str, np.ndarray]:
    image = _image(instance)
    w, h = image.size
    ratio = w / float(h)
    canvas = int(HEIGHT * max(MIN_WIDTH / HEIGHT, ratio))
    if canvas > context.state["max_width"]:
        raise InvalidInput(
            f"the line is {w} x {h} pixels: {canvas} wide at {HEIGHT} px high, over the model's "
            f"{context.state['max_width']} (options.max_width); split the line"
        )
    width = min(canvas, math.ceil(HEIGHT * ratio))
    # Pixel centres mapped as cv2.resize maps them, bilinear, no antialiasing filter (see above).
    resized = image.transform(
        (width, HEIGHT),
        Image.Transform.AFFINE,
        (w / width, 0, 0, 0, h / HEIGHT, 0),
        Image.Resampling.BILINEAR,
    )
    pixels = np.asarray(resized, dtype=np.float32)[:, :, ::-1]  # RGB -> BGR, as OpenCV decodes
    pixels = (pixels / 255.0 - 0.5) / 0.5
    batch = np.zeros((1, 3, HEIGHT, canvas), dtype=np.float32)
    batch[0, :, :, :width] = pixels.transpose(2, 0, 1)
    return {context.inputs[0]: batch}


def postprocess(outputs: Any, instance: Any, context: Context) -> dict[str, Any]:
    probs = np.asarray(outputs[context.outputs[0]])[0]  # (time steps, classes)
    characters = context.state["characters"]
    if probs.shape[-1] != len(characters):
        raise ValueError(f"the graph has {probs.shape[-1]} classes, the dictionary {len(characters)}")
    best = probs.argmax(axis=1)
    keep = np.ones(best.shape[0], dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    text = "".join(characters[i] for i in best[keep].tolist())
    kept = probs.max(axis=1)[keep]
    score = float(np.mean(kept.astype(np.float64))) if kept.size else 0.0
    return {"text": text, "score": score}
