"""Media types the kit reads and writes: one definition for the runtime, the container and batch.

Standard library only, so the batch functions (which get the runtime as a Lambda layer, without numpy
or onnxruntime) can name formats exactly as the container does.
"""

JSON = "application/json"
NPY = "application/x-npy"
JSONL = "application/jsonlines"
JSONL_ALIASES = (
    "application/jsonlines",
    "application/jsonl",
    "application/x-jsonlines",
    "application/x-ndjson",
)
CSV = "text/csv"
