"""The baseline: a bare onnxruntime Lambda handler (no validation, no metrics, no logging, no framework).

Same event in, same model, same thread setting as the kit's function; it only parses the body,
runs the session and writes the outputs.
"""

import json
import os

import numpy as np
import onnxruntime as ort

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
SESSION = ort.InferenceSession(
    os.path.join(os.environ["MDK_MODEL_DIR"], "model.onnx"), _options, providers=["CPUExecutionProvider"]
)
INPUT = SESSION.get_inputs()[0].name


def handler(event, context):  # type: ignore[no-untyped-def]
    rows = np.asarray(json.loads(event["body"])["instances"], dtype=np.float32)
    outputs = SESSION.run(None, {INPUT: rows})
    return {"statusCode": 200, "body": json.dumps([o.tolist() for o in outputs])}
