"""The support matrix is stated once for users and agrees everywhere it is declared (issue 13):
the README's "Supported systems", docs/support.md, ``requires_ansible`` (meta/runtime.yml), the
role's ``min_ansible_version`` and platforms, galaxy.yml's tags, the agent bundle's targets and
locks, and what ``make matrix`` tests."""

from __future__ import annotations

import pathlib
import re

import yaml

TOP = pathlib.Path(__file__).resolve().parents[2]
# The releases the role supports, with the CPython each ships (docs/support.md).
RELEASES = {
    ("Debian", "bullseye"): ("11", "3.9"),
    ("Debian", "bookworm"): ("12", "3.11"),
    ("Debian", "trixie"): ("13", "3.13"),
    ("Ubuntu", "jammy"): ("22.04", "3.10"),
    ("Ubuntu", "noble"): ("24.04", "3.12"),
}


def makefile_list(name: str) -> list[str]:
    found = re.search(rf"^{name} \??:?= (.*)$", (TOP / "Makefile").read_text(), re.M)
    assert found, f"Makefile has no {name}"
    return found.group(1).split()


def test_the_role_declares_the_releases_the_readme_and_docs_state() -> None:
    meta = yaml.safe_load((TOP / "roles/arc_agent/meta/main.yml").read_text())["galaxy_info"]
    declared = {(p["name"], v) for p in meta["platforms"] for v in p["versions"]}
    assert declared == set(RELEASES)
    readme = (TOP / "README.md").read_text()
    support = (TOP / "docs/support.md").read_text()
    for (distribution, codename), (number, python) in RELEASES.items():
        assert f"{distribution} {number}" in support and codename in support, (distribution, codename)
        assert number in readme and python in readme, (distribution, number, python)


def test_requires_ansible_min_ansible_version_and_the_matrix_agree() -> None:
    required = yaml.safe_load((TOP / "meta/runtime.yml").read_text())["requires_ansible"]
    oldest = re.fullmatch(r">=(\d+\.\d+)(\.0)?", required)
    assert oldest, required
    meta = yaml.safe_load((TOP / "roles/arc_agent/meta/main.yml").read_text())["galaxy_info"]
    assert str(meta["min_ansible_version"]) == oldest.group(1)
    # the role refuses an older ansible-core itself (ansible-core only warns), from its own copy
    role_vars = yaml.safe_load((TOP / "roles/arc_agent/vars/main.yml").read_text())
    assert ">=" + str(role_vars["__arc_agent_requires_ansible"]) == required
    cores = makefile_list("MATRIX_CORES")
    main = re.search(r"^ansible-core==(\d+\.\d+)\.", (TOP / "requirements-dev.txt").read_text(), re.M)
    assert main
    tested = sorted([*cores, main.group(1)], key=lambda v: tuple(map(int, v.split("."))))
    assert tested[0] == oldest.group(1), "make matrix must start at requires_ansible"
    minors = [int(v.split(".")[1]) for v in tested]
    assert minors == list(range(minors[0], minors[-1] + 1)), f"a gap in the tested ansible-core: {tested}"
    readme = (TOP / "README.md").read_text()
    assert f"{tested[0]} to {tested[-1]}" in readme and f"`requires_ansible: {required}`" in readme


def test_the_bundle_serves_every_supported_python_and_each_has_a_lock() -> None:
    targets = makefile_list("AGENT_TARGETS")
    pythons = sorted({python for _number, python in RELEASES.values()}, key=lambda v: int(v.split(".")[1]))
    assert targets == [f"cp{p.replace('.', '')}-x86_64" for p in pythons]
    for python in pythons:
        lock = TOP / "agent" / "locks" / f"cp{python.replace('.', '')}.txt"
        assert lock.read_text().startswith(f"# Python {python}."), lock


def test_galaxy_tags_name_the_distributions() -> None:
    tags = set(yaml.safe_load((TOP / "galaxy.yml").read_text())["tags"])
    assert {"debian", "ubuntu"} <= tags
