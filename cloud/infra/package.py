"""The Lambda code asset, staged without Docker: the cloud package's runtime modules and the schemas.
Powertools (with fastjsonschema) comes from its public layer; boto3 from the Lambda runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ["cloud/__init__.py", "cloud/resources.py", "cloud/rules.py", "cloud/domain", "cloud/lambdas"]


def stage(dest=None) -> Path:
    dest = Path(dest or ROOT / "build" / "lambda")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in RUNTIME:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    shutil.copytree(ROOT / "schemas", dest / "schemas")
    return dest


if __name__ == "__main__":
    print(stage())
