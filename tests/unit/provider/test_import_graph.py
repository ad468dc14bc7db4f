"""The package's import graph: no import circle, and every module under the layer contracts.

The graph is grimp's (the library behind ``lint-imports``): every import statement counts, also
those inside functions and under ``TYPE_CHECKING``, since a lazy import is how circles usually hide
(0.1.0 had one: ``operators.activity`` re-exported the export operator through a module
``__getattr__`` while ``operators.export`` imported a helper from ``operators.activity``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest

import airflow_provider_b24

PACKAGE = "airflow_provider_b24"
EMULATOR = f"{PACKAGE}.testing"
PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


@pytest.fixture(scope="module")
def graph() -> Any:
    return grimp.build_graph(PACKAGE)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"a"}}) == [["a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle(graph: Any) -> None:
    edges = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    found = circles(edges)
    details = []
    for component in found:
        members = set(component)
        for module in component:
            for target in sorted(edges[module] & members):
                lines = graph.get_import_details(importer=module, imported=target)
                where = ", ".join(f"l.{d['line_number']}" for d in lines)
                details.append(f"{module} -> {target} ({where})")
    assert not found, "import circles:\n" + "\n".join(details)


def test_nothing_outside_the_emulator_imports_it(graph: Any) -> None:
    offenders = [
        f"{module} -> {target}"
        for module in sorted(graph.modules)
        if not (module == EMULATOR or module.startswith(f"{EMULATOR}."))
        for target in graph.find_modules_directly_imported_by(module)
        if target == EMULATOR or target.startswith(f"{EMULATOR}.")
    ]
    assert offenders == []


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _top_level_modules() -> set[str]:
    root = Path(airflow_provider_b24.__file__).parent
    names = {path.stem for path in root.glob("*.py") if path.stem != "__init__"}
    names |= {path.parent.name for path in root.glob("*/__init__.py")}
    return {f"{PACKAGE}.{name}" for name in names}


def test_every_module_is_under_the_contracts() -> None:
    """A new module must be placed in the layer contracts (pyproject.toml), not slip past them."""
    contracts = _contracts()
    modules = _top_level_modules()
    guarded = set(contracts["nothing-imports-the-emulator"]["source_modules"])
    assert modules - {EMULATOR} - guarded == set(), "add these to pyproject.toml [tool.importlinter]"
    judged = set(contracts["emulator-independent"]["forbidden_modules"])
    assert modules - {EMULATOR, f"{PACKAGE}.version"} - judged == set()
    # The Airflow-free modules are exactly the layers below the adapters, plus the emulator.
    no_airflow = set(contracts["no-airflow-below-adapters"]["source_modules"])
    layers = contracts["layers"]["layers"]
    adapters = {f"{PACKAGE}.{name.strip()}" for name in layers[0].split(":")}
    assert no_airflow.isdisjoint(adapters)
    assert modules - adapters - no_airflow == {f"{PACKAGE}.get_provider_info"}  # provider metadata
