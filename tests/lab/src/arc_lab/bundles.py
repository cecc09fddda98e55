"""Agent bundles for the tests on hosts: another version of the agent (``tools/alt-wheelhouse.sh``),
a broken copy of a bundle (its himds exits at once: a bad release), and publishing one into the
lab's control plane (``arc-controlplane agent publish``)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess

from arc_lab.environment import TOP

WHEELHOUSE = TOP / "build" / "wheelhouse"


def wheelhouse_version() -> str:
    return str(json.loads((WHEELHOUSE / "targets.json").read_text())["version"])


def alt_bundle(out: pathlib.Path, version: str) -> pathlib.Path:
    """The agent from agent/ as ``version``, bundled for the targets of build/wheelhouse."""
    subprocess.run([str(TOP / "tools/alt-wheelhouse.sh"), str(out), version], check=True, capture_output=True)
    return out


def broken_archive(archive: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """The same runtime, but its himds exits at once (a bad release)."""
    tree = target.with_name(target.name + ".d")
    tree.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tree)], check=True)
    (tree / "bin" / "himds").write_text("#!/bin/sh\necho 'this himds is broken' >&2\nexit 3\n")
    subprocess.run(["tar", "-czf", str(target), "-C", str(tree), "."], check=True)
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    return target


def broken_bundle(bundle: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """A copy of ``bundle`` whose every archive is broken (targets.json and SHA256SUMS to match)."""
    out.mkdir(parents=True)
    document = json.loads((bundle / "targets.json").read_text())
    sums = []
    for entry in document["targets"].values():
        broken = broken_archive(bundle / entry["archive"], out / entry["archive"])
        entry["sha256"] = hashlib.sha256(broken.read_bytes()).hexdigest()
        sums.append(f"{entry['sha256']}  {entry['archive']}\n")
    (out / "targets.json").write_text(json.dumps(document, indent=1))
    (out / "SHA256SUMS").write_text("".join(sums))
    return out
