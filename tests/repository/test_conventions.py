"""Conventions of the repository that a newcomer relies on (issue 11): one naming scheme for
changelog fragments, integration targets split per concern, tests and tools that import code
by its name (no sys.path tricks), a lab package that does nothing when imported, and no copy
of the same logic in two places of one part (pylint's duplicate-code)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import yaml

TOP = pathlib.Path(__file__).resolve().parents[2]
FRAGMENT = re.compile(r"\d+-[a-z0-9]+(-[a-z0-9]+)*\.yml")
# The parts that ship or run on their own; each is checked for copies within itself.
PARTS = ("plugins", "agent/src/arc_agent", "controlplane/src/arc_controlplane", "tests/lab/src/arc_lab")


def tracked(*patterns: str) -> list[pathlib.Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=TOP, capture_output=True, text=True, check=True)
    return [TOP / name for name in out.stdout.split() if (TOP / name).exists()]


def test_changelog_fragments_are_named_issue_dash_topic() -> None:
    names = [p.name for p in (TOP / "changelogs" / "fragments").iterdir() if p.name != ".keep"]
    assert names
    wrong = sorted(name for name in names if not FRAGMENT.fullmatch(name))
    assert not wrong, f"name fragments <issue>-<topic>.yml (e.g. 11-one-place-per-decision.yml): {wrong}"


def test_integration_targets_are_split_per_concern() -> None:
    for target in sorted((TOP / "tests" / "integration" / "targets").iterdir()):
        assert (target / "aliases").is_file(), f"{target.name} has no aliases file"
        plays = yaml.safe_load((target / "tasks" / "main.yml").read_text())
        included = []
        for block in plays:
            for part in ("block", "always"):
                for task in block.get(part, []) if part == "block" else []:
                    assert set(task) <= {"name", "ansible.builtin.include_tasks"}, (target.name, task)
                    included.append(task["ansible.builtin.include_tasks"])
        assert len(included) >= 2, f"{target.name}: main.yml should include one file per concern"
        for name in included:
            assert (target / "tasks" / name).is_file(), (target.name, name)


def test_no_sys_path_manipulation() -> None:
    found = [
        f"{path.relative_to(TOP)}:{n}"
        for path in tracked("*.py")
        if path.name != "test_conventions.py"
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*[+]?=|PYTHONPATH", line)
    ]
    assert not found, "import code by its installed name instead: " + ", ".join(found)


def test_importing_the_lab_does_no_work() -> None:
    """Every arc_lab module imports without starting a process, opening a connection or a file
    for writing (an audit hook watches)."""
    modules = sorted(
        "arc_lab" + ("" if p.stem == "__init__" else "." + p.stem)
        for p in (TOP / "tests" / "lab" / "src" / "arc_lab").glob("*.py")
    )
    probe = (
        "import sys\n"
        "seen = []\n"
        "def hook(event, args):\n"
        "    if event in ('subprocess.Popen', 'os.system', 'os.exec', 'os.posix_spawn', 'socket.connect'):\n"
        "        seen.append(event)\n"
        "    elif event == 'open' and isinstance(args[1], str) and any(c in args[1] for c in 'wax+'):\n"
        "        seen.append(f'open {args[0]} {args[1]}')\n"
        "sys.addaudithook(hook)\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "print(seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout


def test_no_copy_of_the_same_logic_within_a_part() -> None:
    for part in PARTS:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pylint",
                "--disable=all",
                "--enable=duplicate-code",
                "--min-similarity-lines=5",
                "--ignore-imports=yes",
                "--ignore-signatures=yes",
                "--ignore-comments=yes",
                "--ignore-docstrings=yes",
                "--score=no",
                part,
            ],
            cwd=TOP,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            check=False,
        )
        assert out.returncode == 0, f"{part}: the same code twice; make one function of it\n{out.stdout}"


def _tasks(items: object, become: object = None) -> list[tuple[dict[str, object], object]]:
    """Every task of a task list (blocks opened), with the ``become`` it runs under."""
    found: list[tuple[dict[str, object], object]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        here = item.get("become", become)
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            found += _tasks(item.get(key), here)
        if not any(key in item for key in ("block", "tasks", "pre_tasks", "post_tasks")):
            found.append((item, here))
    return found


def test_tasks_on_the_controller_never_become() -> None:
    """A task the role delegates to the controller must not inherit the play's become: an
    execution environment without sudo would try it locally (issue 13)."""
    offenders = []
    for path in tracked("roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "playbooks/*.yml"):
        for task, become in _tasks(yaml.safe_load(path.read_text(encoding="utf-8"))):
            if str(task.get("delegate_to", "")) in ("localhost", "127.0.0.1") and become is not False:
                offenders.append(f"{path.relative_to(TOP)}: {task.get('name')}")
    assert not offenders, "delegated to the controller without 'become: false':\n" + "\n".join(offenders)
