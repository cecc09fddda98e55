# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The arc_agent role takes no decision about the agent's state in Jinja: it reads the host once
and asks the arc_agent_plan filter (plugins/filter/arc_agent.py), which compares with the
modules' own code (plugins/module_utils/_desired.py). vars/main.yml holds data only."""

import os
import re

import yaml

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "arc_agent")
# What the host reported: only the task that hands it to the filter may read it.
HOST_STATE = re.compile(r"__arc_agent_probe\b|\.arc_agent\.(show|config|services|version|connected)\b")
# A Jinja expression that does more than name one variable (a comparison, a test, a filter).
LOGIC = re.compile(r"\{%|==|!=|\bis\b|\bif\b|\|")
PLAIN_REFERENCE = re.compile(r"\{\{ *[a-z_]+ *\}\}")


def role_files():
    for folder, _dirs, files in os.walk(ROLE):
        for name in files:
            if name.endswith((".yml", ".yaml", ".j2")):
                yield os.path.join(folder, name)


def read(path):
    with open(path) as handle:
        return handle.read()


def test_vars_main_holds_data_only():
    for name, value in yaml.safe_load(read(os.path.join(ROLE, "vars", "main.yml"))).items():
        for text in _strings(value):
            expressions = re.findall(r"\{\{.*?\}\}", text, flags=re.S)
            assert all(PLAIN_REFERENCE.fullmatch(e) for e in expressions), (name, text)
            assert not LOGIC.search(text), (name, text)


def test_no_jinja_statement_anywhere_in_the_role():
    for path in role_files():
        if path.endswith(".j2"):
            continue
        assert "{%" not in read(path), path


def test_only_the_plan_task_reads_what_the_host_reported():
    readers = []
    for path in role_files():
        for line in read(path).splitlines():
            if HOST_STATE.search(line):
                readers.append("%s: %s" % (os.path.relpath(path, ROLE), line.strip()))
    # probe.yml: the registration and the hand-over to the filter (which reads the checksums too);
    # bootstrap.yml reads the host again once it has Python.
    assert sorted(readers) == [
        "tasks/bootstrap.yml: register: __arc_agent_probe",
        "tasks/probe.yml: register: __arc_agent_probe",
        "tasks/probe.yml: {{ __arc_agent_probe | hybridops.arc.arc_agent_plan(",
    ], "\n".join(readers)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
