"""The `mdk` console script, run in process by tests (output captured, exit status kept)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def runner(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *extra: str
) -> Callable[..., Result]:
    """``run(*args)``: ``mdk *args *extra`` through the CLI's entry point, as the console script runs it."""
    from mdk import cli

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["mdk", *args, *extra])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
