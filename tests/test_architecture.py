"""The rooms of the code keep their one-way doors: `lint-imports` (import-linter) holds every import
to the contracts in pyproject.toml [tool.importlinter], which docs/architecture.md ("Rooms and
allowed imports") states in words."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_keeps_the_rooms_contracts():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "lint-imports is not installed in this environment: make setup (import-linter)"
    r = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, "lint-imports found imports across the rooms' doors:\n" + r.stdout + r.stderr


# The packages whose modules import each other, and where each lives (the firmware's package is
# not on the host's path: it is read from its folder).
PACKAGES = {"contract": ROOT / "contract", "boardlink": ROOT / "boardlink", "provisioning": ROOT / "provisioning",
            "flashing": ROOT / "flashing",
            "cloud": ROOT / "cloud", "vesp32": ROOT / "vesp32", "sim": ROOT / "sim", "hil_tests": ROOT / "hil_tests",
            "motorguard": ROOT / "firmware" / "motorguard"}


def module_files() -> dict:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            if "node_modules" in f.parts or "cdk.out" in f.parts:
                continue
            parts = [pkg, *f.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def import_graph(mods: dict) -> dict:
    """{module: the modules it imports}, every import statement counted, at the top of a file or
    inside a function alike: an import hidden in a function still makes a circle."""
    def known(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, f in mods.items():
        out = set()
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                out.update(known(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module
                out.update(known(base + "." + a.name) if base + "." + a.name in mods else known(base)
                           for a in node.names)
        graph[name] = out - {None, name}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        group.append(m)
                        if m == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def test_no_module_imports_itself_back():
    # A circle makes two modules one: neither can be understood, tested or loaded alone. Caught
    # here whether it goes through a top-level import or one inside a function.
    assert cycles(import_graph(module_files())) == []


def test_the_cycle_check_finds_a_circle_through_a_function_level_import():
    graph = import_graph({"motorguard.a": _write("import motorguard.b\n"),
                          "motorguard.b": _write("def f():\n    from motorguard import a\n"),
                          "motorguard.c": _write("from motorguard import a\n")})
    assert cycles(graph) == [["motorguard.a", "motorguard.b"]]


def _write(text: str) -> Path:
    import tempfile

    f = Path(tempfile.mkdtemp()) / "m.py"
    f.write_text(text)
    return f


# A file that one person can hold in their head: past this, split it along its seam (one job a
# file). Counted over what ships or runs the product, tests apart.
MAX_LINES = 430
PRODUCT = ("contract", "boardlink", "provisioning", "flashing", "cloud", "vesp32", "sim", "firmware", "web/src",
           "scripts")


def test_no_product_file_is_over_the_line_limit():
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *PRODUCT], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    sources = [ROOT / f for f in tracked if f.endswith((".py", ".js", ".mjs", ".css", ".html", ".sh"))]
    assert len(sources) > 100, "the file list is wrong: %d files" % len(sources)
    long = {str(f.relative_to(ROOT)): n for f in sources if f.exists()
            for n in [len(f.read_text(errors="replace").splitlines())] if n > MAX_LINES}
    assert not long, "over %d lines (split each along its seam): %s" % (MAX_LINES, long)
