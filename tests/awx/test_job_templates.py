"""The playbooks `hybridops.arc.onboard`, `configure` and `offboard` run the way AWX / Automation
Platform runs a job template: through ansible-runner, with a private data directory holding the
inventory, the extra variables (the credential among them, as an AWX credential injects it),
the environment and a project whose playbook imports the collection's. Asserts on the job's
events, as AWX shows them, and on the hosts and the control plane.

Needs root and the tools of `make deps` (real test hosts and the control plane; `make awx`).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import ansible_runner
import pytest
from arc_lab import TESTHOSTS, TOP, Lab, run
from arc_lab.bundles import alt_bundle, broken_bundle, wheelhouse_version
from arc_lab.plane import in_namespace

PROJECT_PLAYBOOK = """\
# A job template's project: the collection's playbook, imported.
- name: Run hybridops.arc.{name} on the inventory
  ansible.builtin.import_playbook: hybridops.arc.{name}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    started = Lab.start(2, install=False)
    yield started
    started.stop()


def private_data_dir(
    base: pathlib.Path, playbook: str, extravars: dict[str, Any], collections: pathlib.Path | None = None
) -> pathlib.Path:
    pdd = base / "pdd"
    shutil.rmtree(pdd, ignore_errors=True)
    for sub in ("inventory", "env", "project"):
        (pdd / sub).mkdir(parents=True)
    shutil.copy(run(str(TESTHOSTS), "inventory").strip(), pdd / "inventory" / "hosts")
    (pdd / "project" / f"{playbook}.yml").write_text(PROJECT_PLAYBOOK.format(name=playbook))
    (pdd / "env" / "envvars").write_text(
        json.dumps(
            {
                "ANSIBLE_COLLECTIONS_PATH": str(collections or TOP / "build/collections"),
                "ANSIBLE_FORCE_COLOR": "0",
            }
        )
    )
    Lab.write_secret_json(pdd / "env" / "extravars", extravars)
    return pdd


def launch(
    tmp: pathlib.Path,
    playbook: str,
    extravars: dict[str, Any],
    collections: pathlib.Path | None = None,
    namespace: str = "",
) -> tuple[Any, list[dict[str, Any]]]:
    """One launch of the job template for ``playbook``; a None extra variable is left out. With
    ``collections``, the collection is taken from there; with ``namespace``, the job runs in that
    network namespace (where a controller that reaches the control plane would be)."""
    pdd = private_data_dir(tmp, playbook, {k: v for k, v in extravars.items() if v is not None}, collections)

    def start() -> Any:
        return ansible_runner.run(private_data_dir=str(pdd), playbook=f"{playbook}.yml", quiet=True)

    job = in_namespace(namespace, start) if namespace else start()
    return job, list(job.events)


def onboard(tmp: pathlib.Path, lab: Lab, **overrides: Any) -> tuple[Any, list[dict[str, Any]]]:
    extravars = lab.onboard_vars(arc_agent_tags={"costCenter": "1234", "env": "awx"}, **overrides)
    return launch(tmp, "onboard", extravars)


def assert_secret_never_shows(secret: str, job: Any, events: list[dict[str, Any]], tmp: pathlib.Path) -> None:
    """Not in any event, not in the job's output, not in the artifacts (but the extra variables)."""
    assert secret not in json.dumps(events)
    assert secret not in job.stdout.read()
    for artifact in (tmp / "pdd" / "artifacts").rglob("*"):
        if artifact.is_file() and artifact.name != "extravars":
            assert secret not in artifact.read_text(errors="replace"), artifact


def stats(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    final = [e for e in events if e["event"] == "playbook_on_stats"][-1]["event_data"]
    return {kind: final.get(kind) or {} for kind in ("ok", "changed", "failures", "dark", "skipped")}


def test_onboard_as_a_job_template(lab: Lab, tmp_path: pathlib.Path) -> None:
    secret = lab.plane.onboarding["clientSecret"]
    names = sorted(h.name for h in lab.hosts)

    job, events = onboard(tmp_path, lab)
    assert (job.status, job.rc) == ("successful", 0), job.stdout.read()[-3000:]
    counts = stats(events)
    assert sorted(counts["changed"]) == names and not counts["failures"] and not counts["dark"]
    for host in lab.hosts:
        assert lab.plane.status(host.name) == "Connected"
        machine = lab.plane.machine(host.name) or {}
        assert machine["tags"] == {"costCenter": "1234", "env": "awx"}
    assert_secret_never_shows(secret, job, events, tmp_path)

    # A second launch of the template has nothing to do.
    job, events = onboard(tmp_path, lab)
    assert (job.status, job.rc) == ("successful", 0)
    assert not stats(events)["changed"]


def test_a_missing_variable_fails_the_job_early_and_names_it(lab: Lab, tmp_path: pathlib.Path) -> None:
    job, events = onboard(tmp_path, lab, arc_agent_resource_group=None)
    assert job.status == "failed"
    failed = [e for e in events if e["event"] == "runner_on_failed"]
    assert failed, "the job should fail on a task"
    assert all("arc_agent_resource_group" in json.dumps(e["event_data"].get("res", {})) for e in failed)
    assert not stats(events)["changed"], "nothing may change before the variables are checked"


def test_configure_changes_settings_and_tags_without_reconnecting(lab: Lab, tmp_path: pathlib.Path) -> None:
    before = {host.name: host.json("show")["vmId"] for host in lab.hosts}
    for host in lab.hosts:  # a setting that the job puts back to its default (a null value)
        host.json("config", "set", "proxy.bypass", "ARM")
    extravars = lab.onboard_vars(
        arc_agent_config={"incomingconnections.ports": ["22", "8080"], "proxy.bypass": None},
        arc_agent_tags={"costCenter": "5678", "env": "awx"},
    )
    job, events = launch(tmp_path, "configure", extravars)
    assert (job.status, job.rc) == ("successful", 0), job.stdout.read()[-3000:]
    assert sorted(stats(events)["changed"]) == sorted(before)
    assert_secret_never_shows(lab.plane.onboarding["clientSecret"], job, events, tmp_path)
    for host in lab.hosts:
        assert sorted(host.json("config", "get", "incomingconnections.ports")["value"]) == ["22", "8080"]
        assert host.json("config", "get", "proxy.bypass")["value"] == []
        assert host.json("show")["vmId"] == before[host.name]
        assert (lab.plane.machine(host.name) or {})["tags"] == {"costCenter": "5678", "env": "awx"}

    job, events = launch(tmp_path, "configure", extravars)
    assert (job.status, job.rc) == ("successful", 0)
    assert not stats(events)["changed"]


def summary_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The upgrade playbook's summary, as the job's artifacts (set_stats) hold it."""
    final = [e for e in events if e["event"] == "playbook_on_stats"][-1]["event_data"]
    return dict(final["artifact_data"]["arc_upgrade_summary"])


def test_upgrade_rolls_a_fleet_forward_and_stops_a_bad_version_at_the_canary(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    """docs/playbooks.md, "upgrade": the playbook as a job template, from the control plane's store:
    a good version reaches every host, batch by batch; a version whose himds does not start fails on
    the canary (rolled back there by its health check), the rollout stops, and the summary names the
    failure and the host it did not reach."""
    names = sorted(h.name for h in lab.hosts)
    original = wheelhouse_version()
    good = alt_bundle(tmp_path / "good", "1.66.3600.1")
    bad = broken_bundle(alt_bundle(tmp_path / "bad-src", "1.67.3700.1"), tmp_path / "bad")
    for bundle in (good, bad):
        lab.publish_agent(bundle)
    vm_ids = {host.name: host.json("show")["vmId"] for host in lab.hosts}
    common = {"arc_upgrade_canary": 1, "arc_upgrade_batch": 1}

    job, events = launch(tmp_path, "upgrade", {"arc_upgrade_version": "1.66", **common})
    assert (job.status, job.rc) == ("successful", 0), job.stdout.read()[-3000:]
    assert sorted(stats(events)["changed"]) == names
    assert summary_of(events) == {
        "before": {original: 2}, "after": {"1.66.3600.1": 2}, "failed": {}, "not_reached": [], "halted": "",
    }  # fmt: skip
    for host in lab.hosts:
        assert host.json("version") == {"version": "1.66.3600.1"}
        assert host.json("show", "status", "vmId") == {"status": "Connected", "vmId": vm_ids[host.name]}
    again, events = launch(tmp_path, "upgrade", {"arc_upgrade_version": "1.66", **common})
    assert (again.status, again.rc) == ("successful", 0) and not stats(events)["changed"]

    job, events = launch(tmp_path, "upgrade", {"arc_upgrade_version": "1.67", **common})
    assert job.status == "failed"
    summary = summary_of(events)
    (canary,) = summary["failed"]
    assert "failed its health check" in summary["failed"][canary], summary
    assert summary["not_reached"] == [n for n in names if n != canary]
    assert summary["after"] == {"1.66.3600.1": 2} and canary in summary["halted"], summary
    for host in lab.hosts:
        assert host.json("version") == {"version": "1.66.3600.1"}
        assert host.json("show", "status", "vmId") == {"status": "Connected", "vmId": vm_ids[host.name]}


def test_offboard_deletes_the_machines_and_removes_the_agent(lab: Lab, tmp_path: pathlib.Path) -> None:
    admin = lab.plane.admin
    # Without a credential, the job refuses before touching a host.
    job, events = launch(tmp_path, "offboard", {"arc_agent_purge": True})
    assert job.status == "failed"
    assert "arc_offboard_local_only" in json.dumps([e["event_data"].get("res", {}) for e in events])
    assert not stats(events)["changed"]

    extravars = lab.onboard_vars(
        arc_agent_service_principal_id=admin["clientId"],
        arc_agent_service_principal_secret=admin["clientSecret"],
        arc_agent_purge=True,
    )
    job, events = launch(tmp_path, "offboard", extravars)
    assert (job.status, job.rc) == ("successful", 0), job.stdout.read()[-3000:]
    assert_secret_never_shows(admin["clientSecret"], job, events, tmp_path)
    for host in lab.hosts:
        assert lab.plane.machine(host.name) is None
        left = host.sh("ls -d /opt/azcmagent /var/opt/azcmagent /usr/bin/azcmagent 2>/dev/null", check=False)
        assert left.stdout == ""

    job, events = launch(tmp_path, "offboard", extravars)
    assert (job.status, job.rc) == ("successful", 0)
    assert not stats(events)["changed"]


def test_a_collection_installed_from_its_tarball_onboards_a_bare_fleet_from_the_control_plane_alone(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    """docs/agent-packages.md, "From the control plane": the collection as Galaxy installs it (no
    agent bundle of its own) onboards bare hosts with arc_agent_package_source=control_plane; the
    job runs where the control plane is reachable (the lab's controller namespace), as it would
    in a deployment. The hosts are bare here: the offboard test removed everything."""
    dist, collections = tmp_path / "dist", tmp_path / "collections"
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--force", "--output-path", str(dist), str(TOP)],
        check=True, capture_output=True,
    )  # fmt: skip
    (tarball,) = dist.glob("hybridops-arc-*.tar.gz")
    # as a user's machine has it: no other hybridops.arc on its collections path (make's has ours)
    fresh = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections)}
    subprocess.run(
        ["ansible-galaxy", "collection", "install", "--offline", "-p", str(collections), str(tarball)],
        check=True, capture_output=True, env=fresh,
    )  # fmt: skip
    role = collections / "ansible_collections/hybridops/arc/roles/arc_agent"
    assert role.is_dir() and not (role / "../../build/wheelhouse").exists()
    version = "1.68.3800.1"
    lab.publish_agent(alt_bundle(tmp_path / "bundle", version))
    cache = tmp_path / "cache"
    extravars = lab.onboard_vars(
        arc_agent_package_source="control_plane", arc_agent_version=version,
        arc_agent_package_cache=str(cache),
    )  # fmt: skip

    missing, events = launch(
        tmp_path, "onboard", dict(extravars, arc_agent_version="1.68.3800.9"), collections, lab.env.ctl_ns
    )
    assert missing.status == "failed"
    said = json.dumps([e["event_data"].get("res", {}) for e in events if e["event"] == "runner_on_failed"])
    assert "The control plane has no agent 1.68.3800.9 published" in said, said
    assert "arc-controlplane agent publish BUNDLE" in said and not stats(events)["changed"]

    job, events = launch(tmp_path, "onboard", extravars, collections, lab.env.ctl_ns)
    assert (job.status, job.rc) == ("successful", 0), job.stdout.read()[-3000:]
    assert sorted(stats(events)["changed"]) == sorted(h.name for h in lab.hosts)
    for host in lab.hosts:
        assert host.json("version") == {"version": version}
        assert lab.plane.status(host.name) == "Connected"
    (downloaded,) = cache.glob(f"*-{version}")
    assert (downloaded / "targets.json").is_file() and (downloaded / "SHA256SUMS").is_file()

    again, events = launch(tmp_path, "onboard", extravars, collections, lab.env.ctl_ns)
    assert (again.status, again.rc) == ("successful", 0) and not stats(events)["changed"]
