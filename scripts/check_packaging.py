#!/usr/bin/env python3
"""Check that pyproject.toml ships every package of the source tree.

The package list in pyproject.toml is written by hand (bpf/ is shipped as
netmon.bpf, which automatic discovery cannot express), so a new directory
under netmon/ would silently be left out of a wheel. This script fails when
the list and the tree disagree, or when bpf/ could not be imported as
netmon.bpf from an editable install.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    package_dir: dict[str, str] = config.get("package-dir", {})

    found = {"netmon.bpf"}
    for init in (ROOT / "netmon").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        found.add(".".join(rel.parts))

    problems = []
    for name in sorted(found - listed):
        problems.append(f"package {name} is not listed in [tool.setuptools] packages")
    for name in sorted(listed - found):
        problems.append(f"package {name} is listed but has no __init__.py")
    bpf_dir = ROOT / package_dir.get("netmon.bpf", "bpf")
    if not (bpf_dir / "__init__.py").is_file():
        problems.append(
            f"{bpf_dir.relative_to(ROOT)}/__init__.py is missing: an editable install "
            "cannot import netmon.bpf without it"
        )
    for problem in problems:
        print(f"check_packaging: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_packaging: ok ({len(listed)} packages)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
