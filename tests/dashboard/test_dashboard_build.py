"""The built dashboard (make web -> build/web): within its budget, free of any way to turn a string
into HTML or code, and drawing the firmware's own fault thresholds and the command schema's speed
bounds."""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "build" / "web"
SRC = ROOT / "web" / "src"
BUDGET = 100 * 1024


def bundle():
    files = sorted(WEB.glob("app-*.js")) + sorted(WEB.glob("style-*.css"))
    if not files:
        pytest.fail("the dashboard is not built in %s: run make web (make test builds it first)" % WEB)
    return files


def test_the_page_loads_one_script_and_one_style_sheet_within_100_kb_gzipped():
    files = bundle()
    html = (WEB / "index.html").read_text()
    names = re.findall(r'(?:src|href)="((?:app|style)-[0-9a-f]{12}\.(?:js|css))"', html)
    assert sorted(names) == sorted(f.name for f in files) and len(names) == 2, "index.html names the bundle it ships"
    size = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    assert size <= BUDGET, "%d bytes gzipped, over %d" % (size, BUDGET)
    assert "<script>" not in html and "style=" not in html, "no inline script or style (the CSP forbids them)"


@pytest.mark.parametrize("sink", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                                  "new Function"])
def test_no_string_ever_becomes_html_or_code(sink):
    for path in SRC.glob("*.js"):
        assert sink not in path.read_text(), "%s in %s" % (sink, path.name)
    for path in bundle():
        if path.suffix == ".js":
            assert sink not in path.read_text(), "%s in the bundle %s (a dependency?)" % (sink, path.name)


def test_the_thresholds_drawn_are_the_firmwares_and_the_speeds_offered_the_schemas():
    sys.path.insert(0, str(ROOT / "firmware"))
    from motorguard import config

    text = (SRC / "limits.js").read_text()
    for key, value in config.DEFAULTS["limits"].items():
        if key in ("combined_temp_c", "combined_current_a", "hard_temp_c", "hard_current_a"):
            found = re.search(r"\b%s:\s*([0-9.]+)" % key, text)
            assert found and float(found.group(1)) == float(value), key
    speed = json.loads((ROOT / "schemas" / "v1" / "command.schema.json").read_text())["properties"]["speed"]
    bounds = re.search(r"SPEED = \{ min: (\d+), max: (\d+) \}", text)
    assert (int(bounds.group(1)), int(bounds.group(2))) == (speed["minimum"], speed["maximum"])


def test_the_lock_file_pins_every_dependency_the_page_is_built_from():
    pkg = json.loads((ROOT / "web" / "package.json").read_text())
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    for name, version in {**pkg["dependencies"], **pkg["devDependencies"]}.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), "%s is pinned exactly, not %r" % (name, version)
        assert lock["packages"]["node_modules/" + name]["version"] == version, name
