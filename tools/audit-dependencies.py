"""Known vulnerabilities in what ships: the locked, hashed dependencies of the agent (what the
arc_agent role installs on hosts) and of the control plane.

    tools/audit-dependencies.py LOCKFILE...        (make lint; make lock re-pins the files)

Runs pip-audit over the lock files (``--require-hashes``: every dependency pinned and hashed).
pip-audit asks PyPI about each pinned version; where that per-version service cannot be reached
(this machine kind reaches PyPI's project pages only), a dependency it could not audit is
checked here against its project page, whose ``vulnerabilities`` are those of the newest
release: authoritative when the pin is that release (``make lock`` pins the newest), and
reported as not audited otherwise. Exits 1 when a vulnerability is known, 0 otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

PROJECT = "https://pypi.org/pypi/{name}/json"


def pip_audit(locks: list[str]) -> dict[str, object]:
    """pip-audit over each lock file on its own (the agent has one per target Python, which pin
    different versions of one project); the dependencies of all, each name and version once."""
    argv = [str(Path(sys.executable).parent / "pip-audit"), "--progress-spinner", "off", "--require-hashes",
            "--disable-pip", "-f", "json", "--skip-editable"]  # fmt: skip
    dependencies: dict[tuple[str, str], object] = {}
    for lock in locks:
        done = subprocess.run(argv + ["-r", lock], capture_output=True, text=True, check=False)
        try:
            report: dict[str, list[dict[str, str]]] = json.loads(done.stdout)
        except ValueError:
            raise SystemExit(f"audit-dependencies: pip-audit ({lock}): {done.stderr.strip()}") from None
        pinned = pins([lock])
        for dependency in report.get("dependencies", []):
            dependency.setdefault("version", pinned.get(dependency["name"].lower(), "?"))
            dependencies.setdefault((dependency["name"], dependency.get("version", "")), dependency)
    return {"dependencies": list(dependencies.values())}


def project(name: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(PROJECT.format(name=name), timeout=30) as reply:
            document: dict[str, object] = json.load(reply)
            return document
    except (urllib.error.URLError, OSError, ValueError):
        return None


def pins(locks: list[str]) -> dict[str, str]:
    """``name==version`` of every lock file, by normalised name."""
    found = {}
    for lock in locks:
        for line in Path(lock).read_text().splitlines():
            requirement = line.split(";", 1)[0].split(" ", 1)[0].strip()
            if "==" in requirement and not requirement.startswith(("#", "-")):
                name, version = requirement.split("==", 1)
                found[name.lower().replace("_", "-")] = version
    return found


def main(locks: list[str]) -> int:
    if not locks:
        print(__doc__)
        return 2
    report = pip_audit(locks)
    found: list[str] = []
    unaudited: list[str] = []
    audited = 0
    for dependency in report.get("dependencies", []):  # type: ignore[attr-defined]
        name = dependency["name"]
        version = dependency["version"]
        for vulnerability in dependency.get("vulns", []):
            fixed = ", ".join(vulnerability["fix_versions"]) or "no release"
            found.append(f"{name} {version}: {vulnerability['id']} (fixed in {fixed})")
        if "skip_reason" not in dependency:
            audited += 1
            continue
        page = project(name)
        latest = (page or {}).get("info", {}).get("version")  # type: ignore[union-attr]
        if page is None or latest != version:
            newest = latest or "unknown"
            unaudited.append(f"{name} {version} (only the advisories of the newest, {newest}, are readable)")
            continue
        audited += 1
        for vulnerability in page.get("vulnerabilities", []):  # type: ignore[union-attr]
            if not vulnerability.get("withdrawn"):
                fixed = ", ".join(vulnerability.get("fixed_in") or []) or "no release"
                found.append(f"{name} {version}: {vulnerability['id']} (fixed in {fixed})")
    print(f"audit-dependencies: {audited} pinned dependencies audited, {len(found)} known vulnerabilities")
    for line in unaudited:
        print(f"  not audited: {line}")
    for line in found:
        print(f"  VULNERABLE: {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
