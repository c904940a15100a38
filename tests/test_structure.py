"""The package's shape: imports flow one way, modules stay readable."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dnn_spring"
MAX_MODULE_LINES = 400
# The chain simulators know nothing of networks: besides their own package they
# may use only the argument checks, the curve-shape statistics and the figure style.
CHAIN_MAY_IMPORT = {"dnn_spring._checks", "dnn_spring.metrics", "dnn_spring.metrics._shape",
                    "dnn_spring._style", "dnn_spring._lazy"}
# The layers, bottom first: a module may import its own subpackage and the layers below it.
LAYERS = {
    "metrics": 1,
    "capture": 2, "spring": 2,
    "train": 3, "integrations": 3,
    "sweep": 4,
    "analysis": 5,
    "cli": 6,
}
# Shared helpers at the root import no subpackage (``_startup`` only the two that
# must run before torch loads, and neither imports torch).
ROOT_HELPERS = {"_checks", "_files", "_style", "_lazy", "_version", "_deprecated"}
STARTUP_MAY_IMPORT = {"dnn_spring.train", "dnn_spring.train._preempt", "dnn_spring.train._reproducible"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set) -> set:
    """Package modules that ``path`` imports anywhere (top level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "attach"
              and len(node.args) > 1 and isinstance(node.args[1], ast.Dict)):
            targets = [v.value for v in node.args[1].values]  # a lazy package's names
        else:
            continue
        out.update(t for t in targets if t in modules)
    out.discard(name)
    return out


def _graph() -> dict:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def _cycle(graph: dict):
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_graph_sees_late_lazy_and_relative_imports():
    graph = _graph()
    assert "dnn_spring.train._group" in graph["dnn_spring.train._run"]  # inside a function
    assert "dnn_spring.sweep._store" in graph["dnn_spring.sweep._task"]
    assert "dnn_spring.capture._load_curve" in graph["dnn_spring.capture"]  # a lazy name
    assert "dnn_spring.spring._common" in graph["dnn_spring.spring.first_order"]  # relative


def _layer(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS), packages ^ set(LAYERS)
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == ROOT_HELPERS | {"_startup"}, modules ^ (ROOT_HELPERS | {"_startup"})


def test_imports_go_down_the_layers_only():
    upward = []
    for name, imported in _graph().items():
        mine = _layer(name)
        for other in sorted(imported):
            theirs = _layer(other)
            if name == "dnn_spring" or theirs in ROOT_HELPERS or theirs == mine:
                continue
            if mine == "_startup":
                ok = other in STARTUP_MAY_IMPORT
            elif mine in ROOT_HELPERS:
                ok = False
            else:
                ok = theirs in LAYERS and LAYERS[theirs] < LAYERS[mine]
            if not ok:
                upward.append(f"{name} -> {other}")
    assert not upward, upward


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    bad = tmp_path / "dnn_spring"
    for sub in LAYERS:
        (bad / sub).mkdir(parents=True)
        (bad / sub / "__init__.py").write_text("")
    (bad / "__init__.py").write_text("")
    (bad / "metrics" / "_x.py").write_text("from dnn_spring.train import _run\n")
    (bad / "train" / "_run.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", bad)
    with pytest.raises(AssertionError, match="dnn_spring.metrics._x -> dnn_spring.train"):
        test_imports_go_down_the_layers_only()


def test_no_import_cycle_inside_the_package():
    graph = {k: {m for m in v if not (k.startswith(m + ".") or m == "dnn_spring")}
             for k, v in _graph().items()}  # a subpackage reading its own __init__ is no cycle
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_chain_package_knows_nothing_of_networks():
    for name, imported in _graph().items():
        if name.startswith("dnn_spring.spring"):
            other = {m for m in imported if not m.startswith("dnn_spring.spring")}
            assert other <= CHAIN_MAY_IMPORT, (name, sorted(other - CHAIN_MAY_IMPORT))


def test_no_module_is_too_long():
    long = {_module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


MAX_FUNCTION_LINES = 60


def _code_lines(node) -> int:
    """Lines of a function from the end of its docstring (or its first statement) to its end."""
    first = node.body[0]
    docstring = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                 and isinstance(first.value.value, str))
    start = first.end_lineno + 1 if docstring else first.lineno
    return node.end_lineno - start + 1


def test_no_function_is_too_long():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _code_lines(node) > MAX_FUNCTION_LINES:
                    long[f"{_module_name(path)}.{node.name}"] = _code_lines(node)
    assert not long, long
