"""The kit's images from one recipe each: rendered as the committed Dockerfiles, executed by the local stager.

* :mod:`mdk.images.recipe`: the typed recipe (base, Copy / Pip / Compile / Env steps, cmd) and its rendering;
* :mod:`mdk.images.kit`: the kit's recipes (Lambda model image, SageMaker serving image, the benchmark's bare
  image, zip functions);
* :mod:`mdk.images.stage`: a recipe executed into a directory without Docker (:class:`StagedImage`);
* :mod:`mdk.images.layers`: the stager's cached pip layers.
"""

from mdk.images.kit import BARE, LAMBDA, RECIPES, SAGEMAKER, recipe_for, zip_function
from mdk.images.layers import ReplayError
from mdk.images.recipe import Arg, Blank, Comment, Compile, Copy, Env, Expose, Pip, Recipe, Workdir
from mdk.images.stage import ImageError, StagedImage, stage

__all__ = [
    "BARE",
    "LAMBDA",
    "RECIPES",
    "SAGEMAKER",
    "Arg",
    "Blank",
    "Comment",
    "Compile",
    "Copy",
    "Env",
    "Expose",
    "ImageError",
    "Pip",
    "Recipe",
    "ReplayError",
    "StagedImage",
    "Workdir",
    "recipe_for",
    "stage",
    "zip_function",
]
