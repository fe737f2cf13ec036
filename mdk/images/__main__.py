"""``python -m mdk.images [--check]``: write the committed Dockerfiles from their recipes (or check them)."""

from __future__ import annotations

import sys
from pathlib import Path

from mdk.images.kit import RECIPES

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    stale = []
    for name, recipe in RECIPES.items():
        path = REPO / name
        text = recipe.render()
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if "--check" not in argv:
            path.write_text(text, encoding="utf-8")
    verb = "differ from their recipes" if "--check" in argv else "rewritten"
    if stale:
        print(f"{', '.join(stale)}: {verb}", file=sys.stderr)
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
