"""mdk's shared inference runtime: one source for the Lambda image, the SageMaker container and batch.

Import the submodules you need; this package imports nothing on its own (cold starts pay for every
import, and the batch functions that get it as a Lambda layer need none of numpy or onnxruntime).
"""

__version__ = "0.1.0"
