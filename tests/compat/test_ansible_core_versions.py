"""The collection on ansible-core versions other than the main one (issue 13): one older than
``requires_ansible`` is refused by the role before the host is touched, with a message that
names both versions and the fix (ansible-core itself only warns and goes on). The play has no
variables: the host (this machine, local connection) is never read, on either version.

``make compat`` builds the other ansible-core in ``build/ansible-core-2.16`` (from PyPI) and runs
this; the collection is the checkout (``build/collections``, ``make collection``).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

TOP = pathlib.Path(__file__).resolve().parents[2]
OLD = TOP / "build" / "ansible-core-2.16" / "bin"
CURRENT = pathlib.Path(sys.executable).parent
PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: hybridops.arc.arc_agent
"""


def run_role_checks(bin_dir: pathlib.Path, tmp_path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "checks.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    environment = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build" / "collections"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True, text=True, env=environment, timeout=300, check=False,
    )  # fmt: skip


def test_an_ansible_core_older_than_requires_ansible_is_refused_first(tmp_path: pathlib.Path) -> None:
    if not (OLD / "ansible-playbook").is_file():
        pytest.fail(f"no ansible-core 2.16 in {OLD.parent}: run 'make compat'")
    required = yaml.safe_load((TOP / "meta" / "runtime.yml").read_text())["requires_ansible"].lstrip(">= ")
    refused = run_role_checks(OLD, tmp_path)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    assert f"hybridops.arc needs ansible-core {required} or newer" in output
    assert "this controller runs ansible-core 2.16." in output
    # refused before anything else: the variables (none are given here) are not even looked at
    assert "arc_agent_" not in output.split("hybridops.arc needs ansible-core", 1)[1]


def test_a_supported_ansible_core_passes_the_check(tmp_path: pathlib.Path) -> None:
    checked = run_role_checks(CURRENT, tmp_path)
    output = checked.stdout + checked.stderr
    assert "needs ansible-core" not in output
    # the variables are checked (and what this bare play lacks is named)
    assert "arc_agent_tenant_id" in output or "arc_agent_resource_group" in output, output
