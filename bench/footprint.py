"""Installed size of the image's Python dependencies, for each Lambda architecture.

Installs ``layers/requirements.txt`` (with the lock) for CPython 3.12 on the glibc of the Lambda
base image (Amazon Linux 2023, glibc 2.34), wheels only, as the Dockerfile's RUN step does, and
sums the files per top-level package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}


def _platforms(machine: str) -> list[str]:
    return [f"--platform=manylinux_2_{minor}_{machine}" for minor in range(34, 16, -1)] + [
        f"--platform=manylinux2014_{machine}"
    ]


def _tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install_size(arch: str, requirements: Path | None = None, label: str = "lambda image") -> dict[str, Any]:
    """Installed size of ``requirements`` (the Lambda image's by default) for one architecture."""
    requirements = requirements or REPO / "layers" / "requirements.txt"
    machine = ARCHES[arch]
    with tempfile.TemporaryDirectory(prefix=f"mdk-footprint-{arch}-") as tmp:
        target = Path(tmp) / "site"
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--only-binary=:all:", "--python-version=3.12", "--implementation=cp",
                *_platforms(machine), "--target", str(target),
                "-r", str(requirements), "-c", str(REPO / "layers" / "constraints.txt"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )  # fmt: skip
        sizes: dict[str, int] = {}
        for entry in target.iterdir():
            if entry.name.endswith((".dist-info", ".data")) or entry.name in ("bin", "__pycache__"):
                continue
            name = entry.name.removesuffix(".libs")
            size = _tree_size(entry) if entry.is_dir() else entry.stat().st_size
            sizes[name] = sizes.get(name, 0) + size
        total = _tree_size(target)
        shutil.rmtree(target, ignore_errors=True)
    top = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)
    return {
        "image": label,
        "arch": arch,
        "total_mib": round(total / 2**20, 1),
        "packages_mib": {k: round(v / 2**20, 1) for k, v in top if v >= 2**19},
        "has_boto3": "boto3" in sizes,
    }
