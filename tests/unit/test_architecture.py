"""The layering rules of docs/architecture.md, checked on every import of every module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "hybridai"
DOC = (ROOT / "docs" / "architecture.md").read_text()

# layer -> layers of hybridai it may not import (None: it may import only those listed)
FORBIDDEN = {
    "edge": {"cloud", "cli", "demo"},
    "cloud": {"edge", "cli", "demo"},
    "serving": {"edge", "cloud", "cli", "demo"},
    "planner": {"edge", "cloud", "cli", "demo"},
}
ONLY = {
    "protocol": set(),
    "orchestrator": {"protocol"},
}


def _imports(path: Path) -> set[str]:
    """The hybridai layers a module imports (at any depth, lazy imports included)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hybridai" and len(parts) > 1:
                found.add(parts[1])
    return found


def _layer_modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def _layers() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


@pytest.mark.parametrize("layer", sorted({*FORBIDDEN, *ONLY}))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    broken = []
    for module in _layer_modules(layer):
        imported = _imports(module) - {layer}
        bad = imported - ONLY[layer] if layer in ONLY else imported & FORBIDDEN[layer]
        if bad:
            broken.append(f"{module.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not broken, "\n".join(broken)


def test_nothing_imports_the_cli() -> None:
    users = [
        str(m.relative_to(PACKAGE))
        for layer in _layers()
        if layer != "cli"
        for m in _layer_modules(layer)
        if "cli" in _imports(m)
    ]
    assert not users


def test_the_page_names_every_folder_and_subpackage() -> None:
    folders = {f"`{layer}/`" for layer in _layers()}
    for big in ("edge", "cloud"):
        for sub in (PACKAGE / big).iterdir():
            if (sub / "__init__.py").exists():
                folders.add(f"`{big}/{sub.name}/`")
    missing = sorted(f for f in folders if f not in DOC)
    assert not missing, f"docs/architecture.md does not describe {missing}"


def _literals() -> dict[tuple[str, ...], list[str]]:
    """Every ``Literal["a", "b", ...]`` of two or more words in src/, by its sorted words."""
    found: dict[tuple[str, ...], list[str]] = {}
    for module in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if not (isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal"):
                continue
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            words = [
                i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)
            ]
            if len(words) == len(items) >= 2:
                found.setdefault(tuple(sorted(words)), []).append(
                    f"{module.relative_to(PACKAGE)}:{node.lineno}"
                )
    return found


def test_each_vocabulary_is_declared_once() -> None:
    twice = {words: where for words, where in _literals().items() if len(where) > 1}
    assert not twice, "declare these once (in protocol/) and import them:\n" + "\n".join(
        f"{list(words)} at {where}" for words, where in twice.items()
    )
