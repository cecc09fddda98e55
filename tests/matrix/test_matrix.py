"""The support matrix (issue 13; docs/support.md): each ansible-core from ``requires_ansible`` to
the newest, and each host release the test-host tool builds, onboards a bare host, converges
again with nothing to change, and offboards it. The main combination (Debian 12 with the
development ansible-core) runs the full suite elsewhere; here each other ansible-core is paired
with a host release so that every ansible-core and every release is covered, the pairs side by
side in one lab.

One pair uses the collection as a user who never clones the repository has it: installed from
its Galaxy tarball into an empty collections path, with the agent bundle served over HTTP
(``arc_agent_package_url``). And a bundle that lacks a host's Python is refused at preflight,
naming the host, before anything on it changes.

``make matrix`` builds the ansible-core environments (``build/ansible-core-X.Y``, from PyPI) and
the tarball, and runs this. Needs root and the tools of ``make deps``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from arc_lab import TESTHOSTS, TOP, Lab, run

# Host i of the lab is of release SUITES[i - 1]; each pair runs on its own host.
SUITES = ("bullseye", "trixie", "jammy", "noble", "bookworm")
PAIRS = (
    ("2.17", "h1", "tarball"),  # Debian 11, Python 3.9; the collection from its tarball
    ("2.18", "h2", "checkout"),  # Debian 13, Python 3.13
    ("2.20", "h3", "checkout"),  # Ubuntu 22.04, Python 3.10
    ("2.21", "h4", "checkout"),  # Ubuntu 24.04, Python 3.12
)
# h5 (Debian 12, Python 3.11) takes the refusals and the Python bootstrap, with ansible-core 2.21
# on Python 3.13: a controller Python other than every host's.
PYTHON_OF_RELEASE = {
    "bullseye": "3.9",
    "bookworm": "3.11",
    "trixie": "3.13",
    "jammy": "3.10",
    "noble": "3.12",
}
WHEELHOUSE = TOP / "build" / "wheelhouse"
RECAP = re.compile(
    r"^(?P<host>h\d+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+failed=(?P<failed>\d+)",
    re.M,
)


def core_bin(version: str) -> pathlib.Path:
    found = TOP / "build" / f"ansible-core-{version}" / "bin"
    if not (found / "ansible-playbook").is_file():
        pytest.fail(f"no ansible-core {version} in {found.parent}: run 'make matrix'")
    return found


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    os.environ["ARC_TESTHOSTS_SUITE"] = " ".join(SUITES)
    try:
        started = Lab.start(len(SUITES), install=False)
    finally:
        del os.environ["ARC_TESTHOSTS_SUITE"]
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tarball_collections(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The collection installed from its built tarball into an empty collections path, by the
    oldest ansible-core's ansible-galaxy."""
    tarballs = sorted((TOP / "build" / "dist").glob("hybridops-arc-*.tar.gz"))
    if not tarballs:
        pytest.fail("no collection tarball in build/dist: run 'make build-collection'")
    path = tmp_path_factory.mktemp("collections")
    galaxy = core_bin(PAIRS[0][0]) / "ansible-galaxy"
    # Only the new path: with the checkout's on ANSIBLE_COLLECTIONS_PATH, ansible-galaxy would find
    # hybridops.arc installed already and do nothing.
    alone = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(path)}
    run(str(galaxy), "collection", "install", "--offline", "-p", str(path), str(tarballs[-1]), env=alone)
    assert (path / "ansible_collections" / "hybridops" / "arc" / "MANIFEST.json").is_file()
    assert not (path / "ansible_collections" / "hybridops" / "arc" / "build").exists()
    return path


@pytest.fixture(scope="module")
def bundle_url() -> Iterator[str]:
    """build/wheelhouse served over HTTP on the controller, as a release's download would be."""
    handler = functools.partial(QuietHandler, directory=str(WHEELHOUSE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def playbook(
    version: str,
    name: str,
    limit: str,
    extravars: dict[str, Any],
    tmp: pathlib.Path,
    collections: pathlib.Path,
) -> tuple[int, str, dict[str, Any]]:
    """``hybridops.arc.<name>`` with ansible-core ``version`` on ``limit``; its rc, output and
    the play's recap per host."""
    extra = Lab.write_secret_json(tmp / f"{name}-{limit}.json", extravars)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOME": str(tmp / f"ansible-home-{version}"),
        "PATH": f"{core_bin(version)}{os.pathsep}{os.environ['PATH']}",
    }
    inventory = run(str(TESTHOSTS), "inventory").strip()
    done = subprocess.run(
        [str(core_bin(version) / "ansible-playbook"), "-i", inventory, "--limit", limit,
         "-e", f"@{extra}", f"hybridops.arc.{name}"],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    stats = {
        found["host"]: {"changed": int(found["changed"]), "failures": int(found["failed"])}
        for found in RECAP.finditer(done.stdout)
    }
    return done.returncode, done.stdout[-4000:] + done.stderr[-2000:], stats


def smoke(
    lab: Lab, tmp: pathlib.Path, version: str, host: str, source: str, bundle: str, tarball: pathlib.Path
) -> None:
    """Onboard, converge with changed=0, offboard: one pair of the matrix."""
    collections = tarball if source == "tarball" else TOP / "build" / "collections"
    packages = {"arc_agent_package_url": bundle} if source == "tarball" else {}
    onboard = lab.onboard_vars(arc_agent_tags={"matrix": version}, **packages)
    rc, output, stats = playbook(version, "onboard", host, onboard, tmp, collections)
    assert rc == 0, f"{version} on {host}: {output}"
    assert stats[host]["changed"] > 0 and stats[host]["failures"] == 0
    assert lab.plane.status(host) == "Connected", f"{version} on {host}"
    rc, output, stats = playbook(version, "onboard", host, onboard, tmp, collections)
    assert rc == 0 and stats[host]["changed"] == 0, f"{version} on {host}, second run: {output}"
    offboard = lab.onboard_vars(**packages)
    offboard["arc_agent_service_principal_id"] = lab.plane.admin["clientId"]
    offboard["arc_agent_service_principal_secret"] = lab.plane.admin["clientSecret"]
    rc, output, stats = playbook(version, "offboard", host, offboard, tmp, collections)
    assert rc == 0, f"{version} on {host}, offboard: {output}"
    assert lab.plane.machine(host) is None, f"{version} on {host}: the machine resource is still there"


def test_every_ansible_core_and_every_release_onboards_converges_and_offboards(
    lab: Lab, tmp_path: pathlib.Path, tarball_collections: pathlib.Path, bundle_url: str
) -> None:
    for host in lab.hosts:  # the hosts are the releases they were asked to be
        release = SUITES[int(host.name[1:]) - 1]
        assert (
            host.sh("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").stdout.strip()
            == (PYTHON_OF_RELEASE[release])
        )
    with ThreadPoolExecutor(max_workers=len(PAIRS)) as pool:
        runs = [
            pool.submit(smoke, lab, tmp_path, version, host, source, bundle_url, tarball_collections)
            for version, host, source in PAIRS
        ]
        for done in runs:
            done.result()


def test_a_bundle_without_the_hosts_python_is_refused_before_anything_changes(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    host = "h5"  # Debian 12, Python 3.11
    partial = tmp_path / "bundle"
    partial.mkdir()
    targets = json.loads((WHEELHOUSE / "targets.json").read_text())
    kept = {name: target for name, target in targets["targets"].items() if not name.startswith("cp311-")}
    (partial / "targets.json").write_text(json.dumps({**targets, "targets": kept}))
    for target in kept.values():
        shutil.copy(WHEELHOUSE / target["archive"], partial)
    run("sh", "-c", f"cd {partial} && sha256sum -- * > SHA256SUMS")
    before = lab.hosts[4].sh("ls -A /opt /etc/systemd/system; getent passwd himds || true").stdout
    rc, output, _stats = playbook(
        PAIRS[-1][0], "onboard", host, lab.onboard_vars(arc_agent_package_dir=str(partial)), tmp_path,
        TOP / "build" / "collections",
    )  # fmt: skip
    assert rc == 2, output
    assert "h5 (Debian 12" in output and "Python 3.11, x86_64" in output, output
    assert "has no packages for cp311-x86_64" in output and "Nothing was changed on the host" in output
    assert lab.hosts[4].sh("ls -A /opt /etc/systemd/system; getent passwd himds || true").stdout == before


def test_a_bundle_that_does_not_match_its_checksums_is_refused(lab: Lab, tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(WHEELHOUSE, broken)
    archive = json.loads((broken / "targets.json").read_text())["targets"]["cp311-x86_64"]["archive"]
    with (broken / archive).open("ab") as tampered:
        tampered.write(b"\0")
    rc, output, _stats = playbook(
        PAIRS[-1][0], "onboard", "h5", lab.onboard_vars(arc_agent_package_dir=str(broken)), tmp_path,
        TOP / "build" / "collections",
    )  # fmt: skip
    assert rc == 2, output
    assert "does not match its SHA256SUMS" in output and archive in output, output
    assert lab.hosts[4].sh("test -e /opt/azcmagent && echo yes || echo no").stdout.strip() == "no"


def test_a_user_without_root_and_without_become_is_refused_before_anything_changes(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    host = lab.hosts[4]
    host.sh(
        "useradd --create-home --user-group fleetops && install -d -o fleetops -m 700 ~fleetops/.ssh"
        " && install -o fleetops -m 600 /root/.ssh/authorized_keys ~fleetops/.ssh/authorized_keys"
    )
    before = host.sh("ls -A /opt /etc/systemd/system; getent passwd himds || true").stdout
    onboard = lab.onboard_vars(ansible_user="fleetops")
    rc, output, _stats = playbook(
        PAIRS[-1][0], "onboard", "h5", onboard, tmp_path, TOP / "build" / "collections"
    )
    assert rc == 2, output
    assert "h5: the role runs as fleetops (uid 1000) there, and installing the agent needs root" in output, (
        output
    )
    assert "Set become: true" in output
    assert host.sh("ls -A /opt /etc/systemd/system; getent passwd himds || true").stdout == before


def test_a_host_without_python3_is_refused_and_bootstrapped_on_request(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    """Python 3 removed from a Debian 12 host (its packages and python3-apt, as on a minimal image); a package
    source on the host that offers it (a local apt repository with the release's python3
    packages, as the hosts reach no mirror)."""
    host = lab.hosts[4]
    version = host.sh("dpkg-query -W -f '${Version}' python3").stdout.strip()
    repo = tmp_path / "repo"
    repo.mkdir()
    run(
        "sh",
        "-c",
        f"cd {repo} && apt-get download -q 'python3={version}' 'python3-minimal={version}' >/dev/null",
    )
    run("sh", "-c", f"cd {repo} && dpkg-scanpackages --multiversion . > Packages")
    host.put_tree(repo, "/srv/repo")
    host.sh(
        "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*"
        " && echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list.d/local.list"
        " && rm -rf /var/lib/apt/lists/*"
        " && dpkg --remove --force-depends python3-apt python3 python3-minimal >/dev/null 2>&1"
        " && ! command -v python3"
    )
    refused = playbook(
        PAIRS[-1][0], "onboard", "h5", lab.onboard_vars(), tmp_path, TOP / "build" / "collections"
    )
    assert refused[0] == 2, refused[1]
    assert "h5 has no Python 3 for Ansible's modules" in refused[1], refused[1]
    assert "arc_agent_bootstrap_python=true" in refused[1]

    onboard = lab.onboard_vars(arc_agent_bootstrap_python=True)
    rc, output, stats = playbook(
        PAIRS[-1][0], "onboard", "h5", onboard, tmp_path, TOP / "build" / "collections"
    )
    assert rc == 0, output
    assert host.sh("dpkg-query -W -f '${Status}' python3").stdout == "install ok installed"
    assert lab.plane.status("h5") == "Connected"
    rc, output, stats = playbook(
        PAIRS[-1][0], "onboard", "h5", onboard, tmp_path, TOP / "build" / "collections"
    )
    assert rc == 0 and stats["h5"]["changed"] == 0, output
