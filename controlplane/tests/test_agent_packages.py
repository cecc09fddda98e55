"""The agent package store (docs/agent-upgrade.md): ``arc-controlplane agent publish/list/remove``
on a running server, the agent API's list and download with the signature agents check, and the
management API refusing a ``desiredVersion`` the store does not have."""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from agent_bundles import TARGETS, make_bundle, runtime_archive
from agent_client import AgentClient
from agentapi_env import AgentApiEnv, new_name, start_env
from conftest import run_cli

HC = "2024-07-10"


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentApiEnv]:
    yield from start_env("sqlite", tmp_path_factory.mktemp("agent-packages"), request)


def store(env: AgentApiEnv) -> list[str]:
    url = env.db.engine.url.render_as_string(hide_password=False)
    return ["--data-dir", str(env.server.data_dir), "--database-url", url]


def agent_cli(env: AgentApiEnv, *args: str) -> tuple[int, str, str]:
    done = run_cli("agent", *args, *store(env))
    return done.returncode, done.stdout, done.stderr


def manage(env: AgentApiEnv, method: str, path: str, body: object = None) -> httpx.Response:
    token = env.principal_token("Azure Connected Machine Resource Administrator")
    return env.http.request(
        method, f"{path}?api-version={HC}", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_a_bundle_is_published_served_signed_and_removed(env: AgentApiEnv, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", "1.70.100.1")
    rc, out, err = agent_cli(env, "publish", str(bundle), "--json")
    assert rc == 0, err
    published = json.loads(out)["packages"]
    assert [(p["version"], p["target"]) for p in published] == [("1.70.100.1", t) for t in TARGETS]
    for package in published:
        kept = env.server.data_dir / "packages" / "agent" / f"{package['sha256']}.tar.gz"
        assert kept.is_file() and oct(kept.stat().st_mode & 0o777) == "0o600"
    rc, out, err = agent_cli(env, "list")
    assert rc == 0 and "1.70.100.1" in out and TARGETS[1] in out, out

    agent = env.connected_agent()
    listing = env.http.get(f"/agent/v1/agentPackages?target={TARGETS[0]}", headers=agent.headers())
    assert listing.status_code == 200, listing.text
    (entry,) = [p for p in listing.json()["packages"] if p["version"] == "1.70.100.1"]
    assert entry["target"] == TARGETS[0]
    assert entry["uri"].endswith(f"/agent/v1/agentPackages/1.70.100.1/{TARGETS[0]}")
    download = env.http.get(entry["uri"], headers=agent.headers())
    assert download.status_code == 200, download.text
    assert hashlib.sha256(download.content).hexdigest() == entry["sha256"]
    assert len(download.content) == entry["size"]
    keys = env.http.get("/agent/v1/packageSigningKey", headers=agent.headers()).json()["keys"]
    claims = jwt.decode(entry["signature"], jwt.PyJWK(keys[0]).key, algorithms=["ES256"])
    assert claims == {
        "version": "1.70.100.1", "target": TARGETS[0], "sha256": entry["sha256"], "size": entry["size"]
    }  # fmt: skip
    assert jwt.get_unverified_header(entry["signature"])["typ"] == "hybridops-arc-agent-package+jws"
    # for machines only; unknown targets and versions are 404, bad ones 400/404
    assert env.http.get(entry["uri"]).status_code == 401
    assert env.http.get(f"/agent/v1/agentPackages?target={TARGETS[0]}").status_code == 401
    missing = env.http.get(f"/agent/v1/agentPackages/1.70.100.2/{TARGETS[0]}", headers=agent.headers())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "AgentPackageNotFound"
    bad = env.http.get("/agent/v1/agentPackages?target=../../etc", headers=agent.headers())
    assert bad.status_code == 400, bad.text
    other = env.http.get("/agent/v1/agentPackages?target=cp39-s390x", headers=agent.headers())
    assert other.status_code == 200 and other.json() == {"packages": []}

    rc, out, err = agent_cli(env, "publish", str(bundle))
    assert rc != 0 and "is published already" in err and "agent remove --version 1.70.100.1" in err, err
    rc, out, err = agent_cli(env, "remove", "--version", "1.70.100.1", "--json")
    assert rc == 0, err
    assert not (env.server.data_dir / "packages" / "agent" / f"{published[0]['sha256']}.tar.gz").exists()
    assert env.http.get(entry["uri"], headers=agent.headers()).status_code == 404
    rc, out, err = agent_cli(env, "remove", "--version", "1.70.100.1")
    assert rc != 0 and "is not published" in err, err


def test_a_published_version_downloads_as_a_bundle_without_a_token(env: AgentApiEnv, tmp_path: Path) -> None:
    """What the role installs a bare host from (arc_agent_package_source: control_plane): the
    folder ``make wheelhouse`` builds, every file checked against SHA256SUMS as a host does."""
    bundle = make_bundle(tmp_path / "b", "1.72.5.1")
    assert agent_cli(env, "publish", str(bundle))[0] == 0
    versions = env.http.get("/downloads/agent")
    assert versions.status_code == 200 and "1.72.5.1" in versions.json()["versions"], versions.text
    base = "/downloads/agent/1.72.5.1"
    sums_text = env.http.get(f"{base}/SHA256SUMS").text
    sums = {name: digest for digest, name in (line.split("  ") for line in sums_text.splitlines())}
    targets = env.http.get(f"{base}/targets.json")
    assert targets.status_code == 200 and targets.headers["content-type"] == "application/json"
    assert hashlib.sha256(targets.content).hexdigest() == sums["targets.json"]
    document = targets.json()
    assert document["version"] == "1.72.5.1" and document["prefix"] == "/opt/azcmagent"
    original = json.loads((bundle / "targets.json").read_text())["targets"]
    assert sorted(document["targets"]) == sorted(original) == sorted(TARGETS)
    for target, entry in document["targets"].items():
        assert entry["archive"] == original[target]["archive"] and entry["sha256"] == sums[entry["archive"]]
        archive = env.http.get(f"{base}/{entry['archive']}")
        assert archive.status_code == 200 and archive.content == (bundle / entry["archive"]).read_bytes()
    assert env.http.get(f"{base}/targets.json").content == targets.content  # the same bytes each time
    # only what the store lists: another version's archive, an unknown version or file, a path
    other = make_bundle(tmp_path / "other", "1.72.5.2")
    assert agent_cli(env, "publish", str(other))[0] == 0
    for path, status in (
        (f"{base}/arc-agent-1.72.5.2-{TARGETS[0]}.tar.gz", 404),
        ("/downloads/agent/9.9.9.9/SHA256SUMS", 404),
        (f"{base}/passwd", 400),
        (f"{base}/..%2F..%2Fkeys%2Fpackage-signing.pem", 404),
        ("/downloads/agent/1.72.5.1%2F..%2F..%2Fkeys/SHA256SUMS", 404),
    ):
        answer = env.http.get(path)
        assert answer.status_code == status, (path, answer.status_code, answer.text)
    missing = env.http.get("/downloads/agent/9.9.9.9/SHA256SUMS")
    assert missing.json()["error"]["code"] == "AgentPackageNotFound"
    assert "arc-controlplane agent list" in missing.json()["error"]["message"]
    assert agent_cli(env, "remove", "--version", "1.72.5.1")[0] == 0
    assert env.http.get(f"{base}/SHA256SUMS").status_code == 404


def test_what_is_not_a_good_bundle_is_refused_and_nothing_is_published(
    env: AgentApiEnv, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    damaged = make_bundle(tmp_path / "damaged", "1.71.0.0")
    with (damaged / f"arc-agent-1.71.0.0-{TARGETS[1]}.tar.gz").open("ab") as archive:
        archive.write(b"x")
    mismatch = make_bundle(tmp_path / "mismatch", "1.72.0.0")
    (mismatch / "SHA256SUMS").write_text("0" * 64 + f"  arc-agent-1.72.0.0-{TARGETS[0]}.tar.gz\n")
    not_runtime = make_bundle(tmp_path / "noruntime", "1.73.0.0", targets=(TARGETS[0],))
    archive_path = not_runtime / f"arc-agent-1.73.0.0-{TARGETS[0]}.tar.gz"
    runtime_archive(archive_path, "", {"README": b"hello"})
    escaping = make_bundle(tmp_path / "escaping", "1.74.0.0", targets=(TARGETS[0],))
    evil = escaping / f"arc-agent-1.74.0.0-{TARGETS[0]}.tar.gz"
    runtime_archive(evil, "", {"bin/azcmagent": b"x", "../../etc/cron.d/evil": b"x"})
    for directory in (not_runtime, escaping):
        digest = hashlib.sha256(next(directory.glob("*.tar.gz")).read_bytes()).hexdigest()
        targets = json.loads((directory / "targets.json").read_text())
        name = targets["targets"][TARGETS[0]]["archive"]
        targets["targets"][TARGETS[0]]["sha256"] = digest
        (directory / "targets.json").write_text(json.dumps(targets))
        (directory / "SHA256SUMS").write_text(f"{digest}  {name}\n")
    for directory, says in (
        (tmp_path / "nowhere", "is not an agent bundle: it has no targets.json"),
        (empty, "is not an agent bundle"),
        (damaged, "it was damaged"),
        (mismatch, "in SHA256SUMS; build the bundle again"),
        (not_runtime, "holds no bin/azcmagent"),
        (escaping, "would land outside the runtime"),
    ):
        rc, out, err = agent_cli(env, "publish", str(directory))
        assert rc != 0, out
        assert says in err and "Traceback" not in err, err
    rc, out, _ = agent_cli(env, "list", "--json")
    versions = {p["version"] for p in json.loads(out)["packages"]}
    assert not versions & {"1.71.0.0", "1.72.0.0", "1.73.0.0", "1.74.0.0"}, versions
    assert tarfile.is_tarfile(evil)


def test_a_desired_version_must_be_published(env: AgentApiEnv) -> None:
    agent = env.connected_agent()
    machine = env.machine(agent.vm_id)
    assert machine is not None
    path = env.machine_id(machine.name)
    refused = manage(env, "PATCH", path, {"properties": {"agentUpgrade": {"desiredVersion": "1.99.0.0"}}})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "InvalidAgentVersion" and "'1.99.0.0' is not published" in error["message"]
    after = env.machine(agent.vm_id)
    assert (
        after is not None
        and after.generation == machine.generation
        and "agentUpgrade" not in (after.properties or {})
    )
    env.publish_agent("1.75.0.0")
    # the real clients pad the build number (1.75.00000.0): the same version
    accepted = manage(
        env, "PATCH", path, {"properties": {"agentUpgrade": {"desiredVersion": "1.75.00000.0"}}}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["properties"]["agentUpgrade"]["desiredVersion"] == "1.75.00000.0"


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_automatic_upgrades_go_to_a_canary_first_and_stop_at_a_failure(env: AgentApiEnv) -> None:
    """docs/agent-upgrade.md, "Automatic upgrades": machines connected with
    ``enableAutomaticUpgrade`` are offered the newest version, the canary batch first; a version
    that fails is offered to nobody else, and ``agent rollout`` says why."""
    agents = []
    for _ in range(3):
        agent = env.agent()
        body = env.registration(agent, new_name(), enableAutomaticUpgrade=True)
        assert agent.register(env.onboarding_token(), body).status_code == 201
        agents.append(agent)
    first = env.machine(agents[0].vm_id)
    assert first is not None and first.properties["agentUpgrade"] == {"enableAutomaticUpgrade": True}
    assert env.connected_agent().read().json()["offeredAgentVersion"] is None, "not for the others"

    def offered(version: str) -> list[AgentClient]:
        return [a for a in agents if a.read().json()["offeredAgentVersion"] == version]

    env.publish_agent("1.80.0.0")
    wait_until(lambda: len(offered("1.80.0.0")) == 1, 20, "the canary offered 1.80")
    (canary,) = offered("1.80.0.0")
    success = {"lastAttemptDesiredVersion": "1.80.0.0", "lastAttemptStatus": "Success",
               "lastAttemptMessage": "upgraded", "lastAttemptTimestamp": "2026-12-04T20:00:00Z"}  # fmt: skip
    assert canary.heartbeat(agentVersion="1.80.0.0", agentUpgrade=success).status_code == 200
    wait_until(lambda: len(offered("1.80.0.0")) == 2, 20, "the next batch offered 1.80")
    assert canary not in offered("1.80.0.0")

    env.publish_agent("1.81.0.0")
    wait_until(lambda: len(offered("1.81.0.0")) == 1, 20, "the canary of 1.81")
    (bad,) = offered("1.81.0.0")
    failure = {"lastAttemptDesiredVersion": "1.81.0.0", "lastAttemptStatus": "Failed",
               "lastAttemptMessage": "the upgrade to 1.81.0.0 failed its health check: himds does not answer",
               "lastAttemptTimestamp": "2026-12-04T21:00:00Z"}  # fmt: skip
    assert bad.heartbeat(agentUpgrade=failure).status_code == 200
    wait_until(lambda: not offered("1.81.0.0"), 20, "1.81 halted")
    rc, out, err = agent_cli(env, "rollout", "--json")
    assert rc == 0, err
    plan = json.loads(out)
    assert plan["version"] == "1.80.0.0"
    (halted,) = plan["halted"]
    assert halted["version"] == "1.81.0.0" and "himds does not answer" in halted["reason"], halted
    rc, out, err = agent_cli(env, "rollout")
    assert rc == 0 and "Halted: 1.81.0.0:" in out and "Rolling out 1.80.0.0" in out, out
    # halted for good: the machine's next attempt (of another version) does not lift it
    later = {**success, "lastAttemptTimestamp": "2026-12-04T22:00:00Z"}
    assert bad.heartbeat(agentVersion="1.80.0.0", agentUpgrade=later).status_code == 200
    time.sleep(6)  # the plan is made again (at most every 5 s)
    assert not offered("1.81.0.0")
    assert [h["version"] for h in json.loads(agent_cli(env, "rollout", "--json")[1])["halted"]] == [
        "1.81.0.0"
    ]
    # a failure of a desiredVersion given as a prefix halts the version it named
    env.publish_agent("1.82.0.0")
    asked = {**failure, "lastAttemptDesiredVersion": "1.82", "lastAttemptTimestamp": "2026-12-04T23:00:00Z"}
    assert bad.heartbeat(agentUpgrade=asked).status_code == 200
    halted_now = [h["version"] for h in json.loads(agent_cli(env, "rollout", "--json")[1])["halted"]]
    assert halted_now == ["1.81.0.0", "1.82.0.0"], halted_now
