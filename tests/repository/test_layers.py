"""The layers of docs/architecture.md, checked: each Python package imports only what sits below
it (or beside it, where the table says so), and no module imports itself back in a circle.

Every import counts, those inside functions too: an import deferred to run time is still an
arrow in the drawing.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]

# (root package, source folder, layers from the bottom up). A layer is a set of sub-packages or
# modules (names relative to the root; "" is the root package itself). A module may import its
# own layer's members only where `beside` allows it.
CONTROL_PLANE = (
    "arc_controlplane",
    TOP / "controlplane/src",
    [
        {
            "",
            "settings",
            "errors",
            "clock",
            "names",
            "text",
            "fsutil",
            "pki",
            "resource_ids",
            "timing",
            "endpoints",
        },  # fmt: skip
        {"db"},
        {"auth"},
        {"machines"},
        {"http"},
        {"api.health", "api.downloads", "api.management", "api.agent", "api.tokens", "api"},
        {"app"},
        {"server"},
        {"admin"},
        {"cli"},
        {"__main__"},
    ],
)
AGENT = (
    "arc_agent",
    TOP / "agent/src",
    [
        {
            "",
            "paths",
            "errors",
            "fsutil",
            "privileges",
            "ipc",
            "logsetup",
            "systemd",
            "processes",
            "hostid",
            "versions",
            "argparser",
            "__main__",
        },
        {"config", "metadata"},
        {"identity"},
        {"cpclient"},
        {"himds", "extd", "gcad", "arcproxy", "upgrade"},
        {"cli"},
    ],
)
BASE_MAY_IMPORT_EACH_OTHER = {"arc_controlplane", "arc_agent"}
"""Base modules import each other (``pki`` uses ``fsutil``); the circle check keeps them honest."""


def modules(root: str, src: pathlib.Path) -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if "migrations" in parts:
            continue  # alembic's scripts, loaded by file name
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: pathlib.Path) -> Iterator[tuple[int, str]]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def resolve(target: str, known: dict[str, pathlib.Path]) -> str | None:
    """The module of ours that an imported name lives in (``a.b.func`` → ``a.b``)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def layer_of(module: str, root: str, layers: list[set[str]]) -> tuple[int, str]:
    rel = module.removeprefix(root).removeprefix(".")
    best: tuple[int, str] | None = None
    for rank, members in enumerate(layers):
        for member in members:
            if (rel == member or rel.startswith(member + ".") or member == "") and (
                best is None or len(member) > len(best[1])
            ):
                if member == "" and "." in rel:
                    continue  # a sub-package not listed anywhere: reported below
                best = (rank, member)
    assert best is not None, f"{module} is in no layer of docs/architecture.md: add it there and here"
    return best


def graph(root: str, src: pathlib.Path) -> tuple[dict[str, set[str]], list[str]]:
    known = modules(root, src)
    edges: dict[str, set[str]] = {name: set() for name in known}
    where: list[str] = []
    for name, path in known.items():
        for line, target in imports_of(name, path):
            found = resolve(target, known)
            if found is not None and found != name and not (found == root and target.endswith("__version__")):
                edges[name].add(found)
                where.append(f"{path.relative_to(TOP)}:{line}: {name} -> {found}")
    return edges, where


@pytest.mark.parametrize("part", [CONTROL_PLANE, AGENT], ids=["controlplane", "agent"])
def test_no_import_runs_up_the_layers(part: tuple[str, pathlib.Path, list[set[str]]]) -> None:
    root, src, layers = part
    edges, where = graph(root, src)
    upward = []
    for line in where:
        name, found = line.rsplit(": ", 1)[1].split(" -> ")
        (rank_from, member_from), (rank_to, member_to) = (
            layer_of(name, root, layers),
            layer_of(found, root, layers),
        )
        sideways = rank_from == rank_to and member_from != member_to and rank_from != 0
        if rank_to > rank_from or sideways:
            upward.append(line)
    assert upward == [], "imports against docs/architecture.md's layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("part", [CONTROL_PLANE, AGENT], ids=["controlplane", "agent"])
def test_no_import_circle(part: tuple[str, pathlib.Path, list[set[str]]]) -> None:
    root, src, _layers = part
    edges, _where = graph(root, src)
    circles = [sorted(group) for group in strongly_connected(edges) if len(group) > 1]
    assert circles == [], f"modules that import each other in a circle: {circles}"


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


COLLECTION_RULES = {
    "plugins/module_utils": (
        "ansible.module_utils",
        "ansible_collections.hybridops.arc.plugins.module_utils",
    ),
    "plugins/modules": ("ansible.module_utils", "ansible_collections.hybridops.arc.plugins.module_utils"),
    "plugins/filter": ("ansible.errors", "ansible_collections.hybridops.arc.plugins.module_utils"),
}


def test_collection_plugins_import_only_module_utils() -> None:
    """Modules and the filter plugin share ``module_utils``; nothing imports a module, and
    ``module_utils`` imports nothing of ours but itself."""
    wrong = []
    for folder, allowed in COLLECTION_RULES.items():
        for path in sorted((TOP / folder).glob("*.py")):
            for line, target in imports_of(path.stem, path):
                ours = target.startswith(("ansible", "ansible_collections"))
                if ours and not target.startswith(allowed):
                    wrong.append(f"{path.relative_to(TOP)}:{line}: {target}")
    assert wrong == [], "\n".join(wrong)
