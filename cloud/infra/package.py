"""The Lambda code asset, staged without Docker: the cloud package's runtime modules, the schemas,
and the compiled packages the handlers import beyond what the Lambda runtime and the Powertools
layer provide (orjson, jsonschema-rs), as pip downloads them for the functions' platform (CPython
3.12 on x86_64 Linux) at the versions pyproject.toml pins, so AWS runs what the tests ran.
boto3 comes from the Lambda runtime; Powertools from its public layer.

    python -m cloud.infra.package [DEST]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ["contract/__init__.py", "cloud/__init__.py", "cloud/resources.py", "cloud/rules.py", "cloud/domain", "cloud/lambdas"]
BUNDLED = ("orjson", "jsonschema-rs")
# The functions' runtime and architecture (cloud/infra/stack.py) as pip names them.
PLATFORM = ["--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.12",
            "--only-binary=:all:"]
WHEEL_CACHE = ROOT / "build" / "lambda-wheels"


def bundled_requirements() -> list[str]:
    """'name==version' of each BUNDLED package, read from pyproject.toml's dependencies."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = dep.strip()
    missing = [name for name in BUNDLED if name not in pins]
    if missing:
        raise RuntimeError("pyproject.toml must pin %s with == (the Lambda asset bundles exactly that version)"
                           % ", ".join(missing))
    return [pins[name] for name in BUNDLED]


def _pip(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("pip %s failed (%d): %s" % (args[0], r.returncode, (r.stderr or r.stdout).strip()[-800:]))


def install_bundled(dest: Path, cache: Path = WHEEL_CACHE) -> None:
    """Downloads the wheels once (PyPI) into cache, then installs them from there into dest."""
    reqs = bundled_requirements()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        _pip("install", "--target", str(dest), "--no-deps", "--no-index", "--find-links", str(cache), *PLATFORM, *reqs)
    except RuntimeError:
        _pip("download", "--dest", str(cache), "--no-deps", *PLATFORM, *reqs)
        _pip("install", "--target", str(dest), "--no-deps", "--no-index", "--find-links", str(cache), *PLATFORM, *reqs)


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
    install_bundled(dest)
    for cache in dest.rglob("__pycache__"):
        shutil.rmtree(cache)
    return dest


if __name__ == "__main__":
    print(stage(sys.argv[1] if len(sys.argv) > 1 else None))
