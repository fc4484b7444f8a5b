"""The layering rule of DESIGN.md, checked on the source: a lower layer never imports a higher one.

settings/clock (and the plain value modules) → store, workspace → audience, render, channels →
runtime → scheduler, web → cli. An engineer extending the engine finds a module's dependencies
by its layer; a violation shows up here, with the file and line, before it tangles anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Top-level module or package under engine/ → layer (higher may import lower, never the reverse).
LAYERS: dict[str, int] = {
    "errors": 0,
    "clock": 0,
    "settings": 0,
    "safety": 0,  # pure checks over settings, shared by the CLI refusals and doctor
    "doctor": 2,  # settings, DNS and HTTP checks before real mail goes out
    "opening_hours": 0,
    "message": 0,
    "tokens": 0,
    "logs": 0,
    "liveness": 0,  # the watchdog of long-running threads: stdlib only
    "display": 0,
    "inbound": 0,
    "metrics": 3,  # counts queue depth from the store at scrape time
    "store": 1,
    "workspace": 1,
    "audience": 2,
    "render": 2,
    "channels": 2,
    "leadership": 2,  # the leader lease and its fence: the runtime's plans may call the fence
    "fire_ledger": 2,
    "demo": 2,
    "transfer": 2,
    "runtime": 3,
    "feedback": 3,
    "scheduler": 4,
    "daemon": 4,
    "simulation": 4,
    "fanout": 4,
    "web": 4,
    "cli": 5,
}


def _layer_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if parts[0] != "engine" or len(parts) < 2 or parts[1] not in LAYERS:
        return None  # not ours, or an attribute of the package itself (engine.__version__)
    return parts[1], LAYERS[parts[1]]


def _engine_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if node.module == "engine":
                found.extend((node.lineno, f"engine.{alias.name}") for alias in node.names)
            elif node.module.startswith("engine."):
                found.append((node.lineno, names[0]))
        elif isinstance(node, ast.Import):
            found.extend(
                (node.lineno, alias.name) for alias in node.names if alias.name.startswith("engine.")
            )
    return found


SOURCES = sorted(p for p in ENGINE.rglob("*.py") if "migrations" not in p.parts)


def test_every_engine_module_has_a_layer() -> None:
    tops = {p.relative_to(ENGINE).parts[0].removesuffix(".py") for p in SOURCES} - {"__init__"}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS: {sorted(tops - set(LAYERS))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_a_module_never_imports_a_higher_layer(path: Path) -> None:
    own = path.relative_to(ENGINE).parts[0].removesuffix(".py")
    if own == "__init__":
        return
    own_layer = LAYERS[own]
    wrong = []
    for line, module in _engine_imports(path):
        target = _layer_of(module)
        if target is not None and target[1] > own_layer:
            wrong.append(
                f"{path.relative_to(ENGINE.parent)}:{line}: {own} (layer {own_layer}) imports {module} "
                f"(layer {target[1]})"
            )
    assert not wrong, "\n".join(wrong)
