"""Which of the agent's services a change is for (``machines/work.py``): the generations a
machine's self-read answers, so that the agent wakes only that service (docs/agent-protocol.md, 5.6)."""

from __future__ import annotations

import datetime as dt

import pytest

from arc_controlplane.db.tables import Machine, MachineExtension
from arc_controlplane.machines.extensions import request_delete
from arc_controlplane.machines.lifecycle import MachineChanges, apply_changes
from arc_controlplane.machines.work import CONFIGURATION, EXTENSIONS, bump, service_generations

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def machine() -> Machine:
    return Machine(generation=3, extensions_generation=2, configuration_generation=1, tags={}, properties={})


def generations(of: Machine) -> tuple[int, dict[str, int]]:
    return of.generation, service_generations(of.extensions_generation, of.configuration_generation)


def test_each_bump_names_the_services_it_is_for() -> None:
    m = machine()
    bump(m, EXTENSIONS)
    assert generations(m) == (4, {"extd": 4, "gcad": 1})
    bump(m, CONFIGURATION)
    assert generations(m) == (5, {"extd": 4, "gcad": 5})
    bump(m)  # the agent's own (tags, its gateway)
    assert generations(m) == (6, {"extd": 4, "gcad": 5})
    bump(m, EXTENSIONS, CONFIGURATION)
    assert generations(m) == (7, {"extd": 7, "gcad": 7})
    with pytest.raises(ValueError, match="no such agent service"):
        bump(m, "arcproxy")
    assert service_generations(None, None) == {"extd": 0, "gcad": 0}


def test_tags_are_the_agents_own_work_and_an_upgrade_the_extension_services() -> None:
    m = machine()
    assert apply_changes(m, MachineChanges(tags={"env": "prod"}), NOW)
    assert generations(m) == (4, {"extd": 2, "gcad": 1})
    assert not apply_changes(m, MachineChanges(tags={"env": "prod"}), NOW)  # no change, no work
    assert generations(m)[0] == 4
    upgrade = {"agentUpgrade": {"desiredVersion": "1.60.0"}}
    assert apply_changes(m, MachineChanges(tags={"env": "test"}, properties=upgrade), NOW)
    assert generations(m) == (5, {"extd": 5, "gcad": 1})  # one bump for both, extd woken for it


def test_an_extension_removal_is_the_extension_services() -> None:
    m = machine()
    request_delete(m, MachineExtension(sequence_number=1, deleting=False), NOW)
    assert generations(m) == (4, {"extd": 4, "gcad": 1})
