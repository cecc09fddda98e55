# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The agent bundle's archive for a host, or why the host is refused (module_utils/_bundle.py, which
# the hybridops.arc.agent_package action runs on the controller): real bundles in a folder,
# with SHA256SUMS written the way sha256sum writes it.

import hashlib
import json

import pytest
from ansible_collections.hybridops.arc.plugins.module_utils._bundle import choose

VERSION = "1.64.3414.2961"


def facts(minor=11, machine="x86_64", distribution="Debian", release="12"):
    return {
        "python": {"version": {"major": 3, "minor": minor}},
        "architecture": machine,
        "distribution": distribution,
        "distribution_version": release,
    }


def make_bundle(folder, version=VERSION, minors=(9, 11), sums=True, old_format=False):
    targets = {}
    for minor in minors:
        archive = "arc-agent-%s-cp3%d-x86_64.tar.gz" % (version, minor)
        (folder / archive).write_bytes(b"runtime for 3.%d" % minor)
        digest = hashlib.sha256((folder / archive).read_bytes()).hexdigest()
        targets["cp3%d-x86_64" % minor] = (
            {"archive": archive} if old_format else {"archive": archive, "sha256": digest}
        )
    (folder / "targets.json").write_text(json.dumps({"version": version, "targets": targets}))
    if sums:
        lines = [
            "%s  %s" % (hashlib.sha256(path.read_bytes()).hexdigest(), path.name)
            for path in sorted(folder.iterdir())
        ]
        (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return folder


def test_the_bundle_gives_each_host_the_archive_of_its_python(tmp_path):
    bundle = make_bundle(tmp_path)
    targets = json.loads((bundle / "targets.json").read_text())["targets"]
    for minor in (9, 11):
        chosen = choose(str(bundle), facts(minor), VERSION, name="h1")
        assert chosen["refusal"] == ""
        assert chosen["target"] == "cp3%d-x86_64" % minor
        assert chosen["archive"] == str(bundle / targets["cp3%d-x86_64" % minor]["archive"])
        assert chosen["sha256"] == targets["cp3%d-x86_64" % minor]["sha256"]
    # without a version to hold, any version serves
    assert choose(str(bundle), facts(), None)["refusal"] == ""


def tamper(bundle):
    with (bundle / ("arc-agent-%s-cp311-x86_64.tar.gz" % VERSION)).open("ab") as stream:
        stream.write(b"\0")


def retarget(bundle):
    document = json.loads((bundle / "targets.json").read_text())
    document["targets"]["cp311-x86_64"]["sha256"] = "0" * 64
    (bundle / "targets.json").write_text(json.dumps(document))


@pytest.mark.parametrize(
    "case, make, change, host, says",
    [
        (
            "another Python",
            {},
            None,
            facts(12, distribution="Ubuntu", release="24.04"),
            [
                "h1 (Ubuntu 24.04, Python 3.12, x86_64):",
                "no packages for cp312-x86_64",
                "it serves cp311-x86_64, cp39-x86_64",
                "make wheelhouse AGENT_TARGETS",
            ],
        ),
        ("another machine", {}, None, facts(11, machine="aarch64"), ["no packages for cp311-aarch64"]),
        ("no bundle", None, None, facts(), ["there is no agent bundle", "arc_agent_package_url"]),
        ("no SHA256SUMS", {"sums": False}, None, facts(), ["there is no agent bundle"]),
        (
            "a tampered archive",
            {},
            tamper,
            facts(),
            ["does not match its SHA256SUMS (arc-agent-%s-cp311-x86_64.tar.gz: FAILED)" % VERSION],
        ),
        (
            "targets.json changed after the sums",
            {},
            retarget,
            facts(),
            ["does not match its SHA256SUMS (targets.json: FAILED)"],
        ),
        (
            "the earlier format",
            {"old_format": True},
            None,
            facts(),
            ["is of the earlier format", "make wheelhouse"],
        ),
        (
            "another version",
            {"version": "1.65.0.0"},
            None,
            facts(),
            ["holds agent 1.65.0.0, not %s" % VERSION],
        ),
    ],
)
def test_a_host_the_bundle_cannot_serve_is_refused_naming_it_and_the_fix(
    tmp_path, case, make, change, host, says
):
    if make is not None:
        make_bundle(tmp_path, **make)
    if change:
        change(tmp_path)
    chosen = choose(str(tmp_path), host, VERSION, name="h1")
    assert chosen["archive"] == "" and chosen["sha256"] == ""
    for text in says + ["Nothing was changed on the host."]:
        assert text in chosen["refusal"], (case, chosen["refusal"])


def test_an_archive_missing_from_the_sums_or_the_folder_is_refused(tmp_path):
    bundle = make_bundle(tmp_path)
    archive = "arc-agent-%s-cp311-x86_64.tar.gz" % VERSION
    (bundle / archive).unlink()
    assert "(%s: missing)" % archive in choose(str(bundle), facts(), VERSION)["refusal"]
    make_bundle(bundle)
    sums = [line for line in (bundle / "SHA256SUMS").read_text().splitlines() if not line.endswith(archive)]
    (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    assert "(%s: not listed)" % archive in choose(str(bundle), facts(), VERSION)["refusal"]
