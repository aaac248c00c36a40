"""The layout's rules, computed from the code: no import cycles, `trainables` never imports
`orchestrator`, and config loading leaves torch (and Ray, pandas, pyarrow) unimported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "trainables", "cluster")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, modules: set[str]) -> str | None:
    """The project module an imported name lives in (`a.b.c` -> `a.b` when c is a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports, counting imports inside functions and
    TYPE_CHECKING blocks too: a cycle hidden in a function is still a cycle."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                found = resolve(target, modules)
                # A package's __init__ importing its own submodules is how packages work.
                if found and found != module and not module.startswith(found + "."):
                    graph[module].add(found)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "orchestrator.config.schema" in graph["orchestrator.config.loading"]
    assert "trainables.loop" in graph["trainables.tune_entry"]


def test_find_cycle_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_trainables_never_import_orchestrator() -> None:
    bad = {m: sorted(t for t in targets if t.startswith("orchestrator"))
           for m, targets in import_graph().items() if m.startswith("trainables")}
    assert {m: t for m, t in bad.items() if t} == {}


def test_config_sections_are_declared_in_the_config_package() -> None:
    """Feature modules import config; the config package imports no feature module."""
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("orchestrator.config"):
            outside = sorted(t for t in targets if t.startswith("orchestrator")
                             and not t.startswith("orchestrator.config"))
            assert outside == [], f"{module} imports {outside}"


HEAVY = ("torch", "ray", "pandas", "pyarrow", "transformers", "peft")


@pytest.mark.parametrize("statement", [
    "import orchestrator.config.loading",
    "import orchestrator",
    "from orchestrator.config.loading import load_config; "
    "load_config('examples/quickstart.yaml')",
    "import orchestrator.cli",
])
def test_config_and_cli_import_no_heavy_library(statement: str) -> None:
    code = f"import sys; {statement}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# The phases top to bottom: a package imports only its own layer and the layers below it. The
# `sweep` command is one layer, wherever its commands live (cluster/cli.py is Ray Jobs').
LAYERS = [("orchestrator.cli", "cluster.cli"), ("cluster",), ("orchestrator.post",),
          ("orchestrator.run",), ("orchestrator.search",), ("orchestrator.experiment",),
          ("orchestrator.config",), ("trainables",)]


def layer_of(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None  # orchestrator/__init__: the lazy public API, above every layer


def test_every_import_points_down_the_layers() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items() for target in targets
        if (a := layer_of(module)) is not None and (b := layer_of(target)) is not None and b < a
    )
    assert upward == []
