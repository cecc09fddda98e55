# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection, used on the controller (the hybridops.arc.agent_package action):
# the archive of an agent bundle (docs/agent-packages.md) for a host, read from the bundle's
# targets.json and checked against its SHA256SUMS, or why the host is refused.

import hashlib
import json
import os

TARGETS = "targets.json"
SUMS = "SHA256SUMS"


def _text(value):
    return "" if value is None else str(value)


def target_of(facts):
    """The bundle's target for a host (``facts``: its Ansible facts, or the ``host`` that
    hybridops.arc.agent_info returns under the same names), e.g. cp311-x86_64."""
    release = (facts.get("python") or {}).get("version") or {}
    return "cp%s%s-%s" % (
        release.get("major", "?"),
        release.get("minor", "?"),
        facts.get("architecture", "?"),
    )


def describe(facts, name):
    """The host for messages: its name, distribution, Python and machine."""
    release = (facts.get("python") or {}).get("version") or {}
    return "%s (%s %s, Python %s.%s, %s)" % (
        name or facts.get("hostname") or "the host",
        facts.get("distribution", "unknown"),
        facts.get("distribution_version", ""),
        release.get("major", "?"),
        release.get("minor", "?"),
        facts.get("architecture", "?"),
    )


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(path):
    """SHA256SUMS (the output of sha256sum) as {file name: SHA-256}."""
    with open(path) as stream:
        return parse_sums(stream.read())


def parse_sums(text):
    """The text of a SHA256SUMS file as {file name: SHA-256}."""
    sums = {}
    for line in text.splitlines():
        digest, _sep, name = line.strip().partition(" ")
        if name:
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def _mismatch(source, sums, name, path):
    """Why the file ``name`` of the bundle does not match its SHA256SUMS, or ""."""
    if name not in sums:
        return "%s: not listed" % name
    if not os.path.isfile(path):
        return "%s: missing" % name
    if file_sha256(path) != sums[name]:
        return "%s: FAILED" % name
    return ""


def choose(source, facts, version, name=""):
    """The archive of the bundle in the folder ``source`` for the host ``name``: a dict with
    ``target``, ``archive`` (its path), ``sha256`` and ``refusal`` (empty when the bundle serves
    the host; otherwise the reason, naming the host and the fix, and archive and sha256 empty).
    targets.json and the chosen archive are checked against SHA256SUMS; with ``version``, the
    bundle must hold that agent version."""
    facts = facts or {}
    target = target_of(facts)
    refusal = ""
    chosen = {}
    try:
        sums = read_sums(os.path.join(source, SUMS))
        with open(os.path.join(source, TARGETS)) as stream:
            bundle = json.load(stream)
    except (OSError, ValueError):
        bundle, sums = None, {}
    if bundle is None or not isinstance(bundle, dict):
        refusal = (
            "there is no agent bundle (targets.json, SHA256SUMS and an archive per target) in %s."
            " Download the bundle of agent %s and point arc_agent_package_dir at its folder (or"
            " arc_agent_package_url at where it is served), or build it with 'make wheelhouse' in the"
            " collection's repository (docs/agent-packages.md)." % (source, version)
        )
    else:
        targets = bundle.get("targets") or {}
        chosen = targets.get(target) or {}
        archive = _text(chosen.get("archive"))
        mismatch = _mismatch(source, sums, TARGETS, os.path.join(source, TARGETS))
        if not mismatch and archive:
            mismatch = _mismatch(source, sums, archive, os.path.join(source, archive))
            if not mismatch and _text(chosen.get("sha256")).lower() not in ("", sums[archive]):
                mismatch = "%s: targets.json gives another SHA-256" % archive
        if mismatch:
            refusal = (
                "the agent bundle %s does not match its SHA256SUMS (%s). Build it again ('make wheelhouse' in"
                " the collection's repository) or fetch it again." % (source, mismatch)
            )
        elif version and _text(bundle.get("version")) != _text(version):
            refusal = (
                "the agent bundle %s holds agent %s, not %s. Point arc_agent_package_dir (or"
                " arc_agent_package_url) at the bundle of agent %s."
                % (source, _text(bundle.get("version")) or "nothing", version, version)
            )
        elif archive and not chosen.get("sha256"):
            refusal = (
                "the agent bundle %s is of the earlier format (archives of wheels for pip, without their"
                " SHA-256 in targets.json), which this collection no longer installs. Build it again ('make"
                " wheelhouse' in the collection's repository)." % source
            )
        elif not archive:
            refusal = (
                "the agent bundle %s has no packages for %s (it serves %s). Use a bundle built for it"
                " ('make wheelhouse AGENT_TARGETS=\"... %s\"'), or leave the host out."
                % (source, target, ", ".join(sorted(targets)) or "nothing", target)
            )
    if refusal:
        return dict(
            target=target,
            archive="",
            sha256="",
            refusal="%s: %s Nothing was changed on the host." % (describe(facts, name), refusal),
        )
    return dict(
        target=target,
        archive=os.path.join(source, chosen["archive"]),
        sha256=_text(chosen["sha256"]).lower(),
        version=_text(bundle.get("version")),
        refusal="",
    )
