"""Kept for importers of the old name: the local Lambda is :mod:`mdk.local.cloud.services.lambda_`."""

from mdk.local.cloud.services.lambda_ import *  # noqa: F403 - the old name stands for the whole module
