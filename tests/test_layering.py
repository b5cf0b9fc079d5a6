"""The package's folders depend on each other one way: each imports only folders below it, and the core never imports a
method (iGRPO, RPO, GRPO) or anything built on them.

The graph is read from the source (every ``import`` and ``from ... import`` statement, including those inside
functions and ``if TYPE_CHECKING:`` blocks), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trl_igrpo"

#: The allowed direction, bottom to top: a unit (a folder, or a module at the package root) may import units of lower
#: layers only, never one of its own layer or above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils", "testing"),  # small pieces importing nothing of the package; the offline tiny models
    ("reasoning", "tied_lora"),  # <think> parsing and reasoning modes; the Tied-LoRA PEFT tuner
    ("hub", "rewards", "data"),  # model cards and citations; reward functions; data loading and prompts
    ("curriculum", "vllm"),  # the pieces the base trainer switches on by config fields (no trainer class)
    ("core",),  # GRPOBaseConfig, GRPOBaseTrainer and the checks every trainer shares
    ("igrpo", "rpo", "grpo"),  # the methods: trainers built on the core
    ("eval", "demo"),  # evaluation and the demo tasks, which use the methods
    ("scripts",),  # the training scripts behind the command line
    ("__init__",),  # the public names, imported on first use
    ("cli",),  # the ``trl-igrpo`` command (its --version reads __init__)
    ("__main__",),  # ``python -m trl_igrpo``
)
#: Folders the core must never import (the core never imports a method or a feature built on one).
ABOVE_CORE = {unit for layer in LAYERS[LAYERS.index(("core",)) + 1 :] for unit in layer}


def _unit(parts: tuple[str, ...]) -> str:
    """The unit of a module path relative to the package: its folder, the root module's own name, or ``__init__`` for
    a name defined by the package itself (``from trl_igrpo import __version__``, ``import trl_igrpo``)."""
    if not parts:
        return "__init__"
    exists = (PACKAGE / parts[0]).is_dir() or (PACKAGE / f"{parts[0]}.py").is_file()
    return parts[0] if exists else "__init__"


def _imported_units(path: Path) -> set[str]:
    package = path.relative_to(PACKAGE).parts[:-1]  # the folders containing the module (__init__: its own folder)
    units = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = (*base, *(node.module.split(".") if node.module else ()))
                names = [target] if node.module else [(*target, alias.name) for alias in node.names]
            elif node.module and node.module.split(".")[0] == "trl_igrpo":
                target = tuple(node.module.split(".")[1:])
                names = [target] if target else [(alias.name,) for alias in node.names]
            else:
                continue
            units.update(_unit(name) for name in names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "trl_igrpo":
                    units.add(_unit(tuple(parts[1:])))
    return units


def folder_graph() -> dict[str, set[str]]:
    """unit -> the other units it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        unit = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        graph.setdefault(unit, set()).update(_imported_units(path) - {unit})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (found := visit(successor)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_unit_has_a_layer():
    layered = {unit for layer in LAYERS for unit in layer}
    assert set(folder_graph()) == layered, (
        "a new folder or root module needs a place in LAYERS (LAYERS, with its comments, is the documented folder graph)"
    )


def test_the_folder_graph_has_no_cycle():
    assert _cycle(folder_graph()) is None, f"import cycle between folders: {' -> '.join(_cycle(folder_graph()) or [])}"


def test_the_core_imports_no_method_and_nothing_above_it():
    assert folder_graph()["core"] & ABOVE_CORE == set()


@pytest.mark.parametrize("unit", sorted({unit for layer in LAYERS for unit in layer}))
def test_each_unit_imports_only_lower_layers(unit):
    level = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    upward = sorted(other for other in folder_graph().get(unit, ()) if level.get(other, len(LAYERS)) >= level[unit])
    assert upward == [], f"{unit} (layer {level[unit]}) imports {upward} from its own layer or above"


def test_the_graph_reader_sees_lazy_and_relative_imports(tmp_path):
    """The reader itself: a function-level relative import and an absolute one both count."""
    folder = tmp_path / "trl_igrpo" / "a"
    folder.mkdir(parents=True)
    module = folder / "m.py"
    for name in ("b", "c"):
        (tmp_path / "trl_igrpo" / name).mkdir()
    module.write_text(
        "def f():\n    from ..b.x import y\n    import trl_igrpo.c.z\n    from . import sibling\n    import trl_igrpo\n"
    )
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "trl_igrpo"
    try:
        assert _imported_units(module) == {"a", "b", "c", "__init__"}
    finally:
        PACKAGE = saved


#: The sizes a newcomer reads without scrolling through: a module holds one idea, a function reads as steps.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def test_no_module_or_function_a_newcomer_has_to_scroll_through():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(PACKAGE.parent)
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {source.count(chr(10))} lines (max {MAX_MODULE_LINES}): split it by idea")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines (max {MAX_FUNCTION_LINES})")
    assert too_long == []
