"""Automatic agent upgrades, the plan (arc_controlplane.machines.rollout; docs/agent-upgrade.md,
"Automatic upgrades"): batches, the canary first, halting a version that fails."""

from __future__ import annotations

from arc_controlplane.machines.rollout import Candidate, batch_sizes, plan

OLD = "1.64.0.0"
NEW = "1.65.0.0"
NEWER = "1.66.0.0"


def fleet(count: int, version: str = OLD) -> list[Candidate]:
    return [Candidate(f"vm-{i:03d}", f"m{i:03d}", version, active=True) for i in range(count)]


def upgraded(machine: Candidate, version: str, status: str = "Success") -> Candidate:
    attempt = {
        "lastAttemptDesiredVersion": version,
        "lastAttemptStatus": status,
        "lastAttemptMessage": "it broke",
    }
    return Candidate(
        machine.vm_id, machine.name, version if status == "Success" else machine.version, True, attempt
    )


def test_batches_start_with_a_tenth_and_double() -> None:
    assert batch_sizes(0) == []
    assert batch_sizes(3) == [1, 2]
    assert batch_sizes(20) == [2, 4, 8, 6]
    assert sum(batch_sizes(1000)) == 1000 and batch_sizes(1000)[0] == 100


def test_the_newest_version_goes_to_the_canary_first_then_batch_by_batch() -> None:
    machines = fleet(20)
    first = plan([OLD, NEW], machines)
    assert first.version == NEW
    canary = first.batches[0].machines
    assert len(canary) == 2 and set(first.offers) == {m.vm_id for m in canary}
    assert set(first.offers.values()) == {NEW}
    assert [b.offered for b in first.batches] == [True, False, False, False]
    # the canary done: the next batch is offered
    done = {m.vm_id for m in canary}
    second = plan([OLD, NEW], [upgraded(m, NEW) if m.vm_id in done else m for m in machines])
    assert [b.offered for b in second.batches] == [True, True, False, False]
    assert set(second.offers) == {m.vm_id for m in second.batches[1].machines}
    # the order is stable for a version, and differs between versions
    assert [m.vm_id for m in plan([NEW], machines).batches[0].machines] == [m.vm_id for m in canary]
    assert [m.vm_id for m in plan([NEWER], machines).batches[0].machines] != [m.vm_id for m in canary]


def test_machines_that_are_not_connected_do_not_hold_the_rollout_back() -> None:
    machines = fleet(3)
    canary = plan([NEW], machines).batches[0].machines[0]
    offline = [Candidate(m.vm_id, m.name, m.version, active=False) if m == canary else m for m in machines]
    assert [b.offered for b in plan([NEW], offline).batches] == [True, True]


def test_a_version_that_fails_on_the_canary_is_offered_to_nobody_else() -> None:
    machines = fleet(20)
    canary = plan([OLD, NEW], machines).batches[0].machines
    broken = [upgraded(m, NEW, "Failed") if m.vm_id == canary[0].vm_id else m for m in machines]
    halted = plan([OLD, NEW], broken)
    assert halted.halted == {NEW: f"{canary[0].name} failed to upgrade to it: it broke"}
    assert halted.version == OLD and halted.offers == {}, "the rest stays where it is"
    # a newer version published after it is rolled out again (from its own canary)
    fixed = plan([OLD, NEW, NEWER], broken)
    assert fixed.version == NEWER and len(fixed.offers) == 2


def test_nothing_is_offered_when_nothing_is_published_or_everyone_is_there() -> None:
    assert plan([], fleet(3)).version is None and plan([], fleet(3)).offers == {}
    assert plan([NEW], fleet(3, NEW)).offers == {}
    assert plan([NEW], fleet(3, NEWER)).offers == {}, "never a downgrade"


def test_a_version_halted_before_stays_halted() -> None:
    machines = fleet(5)
    halted = plan([OLD, NEW], machines, {NEW: "m001 failed to upgrade to it: broken"})
    assert halted.version == OLD and halted.halted == {NEW: "m001 failed to upgrade to it: broken"}
    assert plan([OLD, NEW], machines, {"9.9.9.9": "gone"}).halted == {}, "only published versions"
