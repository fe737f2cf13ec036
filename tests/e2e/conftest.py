"""Fixtures of the end-to-end tests: the real Lambda Runtime Interface Emulator binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdk.local.rie import ensure_rie

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rie_binary() -> Path:
    """aws-lambda-rie for this machine, fetched once into the repository's .cache/ (git-ignored)."""
    return ensure_rie(REPO / ".cache")
