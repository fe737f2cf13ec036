"""Where the kit's own sources are: a checkout's tree, or an installed kit's packages and data.

The images, zip functions and layers that ``cdk synth`` writes are made of the kit's own files: the
runtime (``mdk_runtime``), the handlers (``lambda_handlers``), the serving container
(``sagemaker_endpoints``), their Dockerfiles and the pinned requirements. In a checkout they are the
repository's tree; in an installed kit (``pip install`` of the wheel) the packages are where Python
imported them from, the Dockerfiles and container requirements are package data beside them, and the
runtime's requirements and locks (``layers/*.txt``) are the wheel's data files under
``<prefix>/share/mdk/layers``. Everything else asks this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lambda_handlers
import mdk_runtime
import sagemaker_endpoints

CHECKOUT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = Path(mdk_runtime.__file__).resolve().parent
HANDLERS_DIR = Path(lambda_handlers.__file__).resolve().parent
SAGEMAKER_DIR = Path(sagemaker_endpoints.__file__).resolve().parent


def _layers_dir() -> Path:
    checkout = CHECKOUT / "layers"
    if (checkout / "requirements.txt").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "mdk" / "layers"


#: ``requirements.txt``, ``requirements-processing.txt`` and ``constraints.txt`` of the images.
LAYERS_DIR = _layers_dir()
#: Whether this is a checkout of the kit (its tests, examples and `make` targets exist) or an install.
IS_CHECKOUT = LAYERS_DIR == CHECKOUT / "layers"
#: Where synth writes the image and function contexts: the checkout's build/, or the user's project's.
BUILD_ROOT = CHECKOUT if IS_CHECKOUT else Path.cwd()
