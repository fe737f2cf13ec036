"""Mangum keeps a main-thread event loop for the life of a Lambda sandbox; each test here gets its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def event_loop_for_mangum() -> Iterator[None]:
    """A fresh current loop for the test, closed after it: none is left for a later asyncio.run() to
    orphan (an unclosed loop found by the garbage collector fails whichever test is running then)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()
