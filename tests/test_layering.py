"""The package's layering, read from the source: stage modules are entry points, not libraries,
and no two modules import each other, even through an import inside a function."""

from __future__ import annotations

import ast
import graphlib
import importlib
from pathlib import Path

import pytest

import rnn_sentiment

PACKAGE = Path(rnn_sentiment.__file__).parent
MODULES = sorted(
    "rnn_sentiment." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py")
    if path.name != "__init__.py"
)


def source(module: str) -> Path:
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports anywhere in its source, at the top or not."""
    found = set()
    for node in ast.walk(ast.parse(source(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from rnn_sentiment import tracking` imports a module; `from x import name` its x.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found - {module}


GRAPH = {module: imports(module) for module in MODULES}


def is_stage(module: str) -> bool:
    return module.startswith("rnn_sentiment.stages.")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_the_graph_sees_imports_inside_functions() -> None:
    assert "rnn_sentiment.tracking" in GRAPH["rnn_sentiment.stages.train"]  # imported in main()
    assert "rnn_sentiment.padding" in GRAPH["rnn_sentiment.serving"]


def test_no_module_imports_a_stage_module() -> None:
    offenders = [
        f"{module} imports {imported}"
        for module, imported_modules in GRAPH.items()
        for imported in sorted(imported_modules)
        if is_stage(imported)
    ]
    assert offenders == []


def test_there_is_no_import_cycle() -> None:
    try:
        graphlib.TopologicalSorter(GRAPH).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
