"""Builds the agent bundle the arc_agent role installs from: for each target (CPython version and
architecture), the agent wheel with exactly the locked wheels it needs on that target, packed in
one archive per target, plus ``targets.json`` (which archive serves which target) and a
``SHA256SUMS`` of every file.

    tools/agent-bundle.py OUT AGENT_WHEEL TARGET...      (make wheelhouse)

TARGET is ``cp<major><minor>-<machine>``, e.g. ``cp311-x86_64``; the pins of a target come from
``agent/locks/cp<major><minor>.txt`` (``make lock``: pinned, hashed, resolved for the Python release
its first line names).
Runs on any controller Python: pip downloads the wheels of the target's Python and platform, not
of its own. Wheels are taken only for glibc up to 2.31 (Debian 11, the oldest supported host),
so one archive serves every supported distribution of that Python and machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
LOCKS = TOP / "agent" / "locks"
TARGET = re.compile(r"^cp3(\d+)-(x86_64|aarch64)$")
OLDEST_GLIBC_MINOR = 31


def platforms(machine: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(OLDEST_GLIBC_MINOR, 16, -1)]
    return tags + ["manylinux2014_" + machine]


def download(target: str, into: Path) -> list[str]:
    match = TARGET.match(target)
    if not match:
        raise SystemExit(f"agent-bundle: target {target!r} is not cp3<minor>-<machine>, e.g. cp311-x86_64")
    minor, machine = match.groups()
    lock = LOCKS / f"cp3{minor}.txt"
    if not lock.is_file():
        raise SystemExit(f"agent-bundle: no lock for {target} ({lock.relative_to(TOP)}); add it to make lock")
    first = lock.read_text().splitlines()[0]
    if not re.match(rf"^# Python 3\.{minor}\.\d+$", first):
        raise SystemExit(f"agent-bundle: {lock.name} must start with '# Python 3.{minor}.N' (make lock)")
    python = first.split()[-1]
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--require-hashes",
            "--no-deps", "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
            "-d", str(into), "-r", str(lock)]  # fmt: skip
    for tag in platforms(machine):
        argv += ["--platform", tag]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location")]
        raise SystemExit(f"agent-bundle: downloading the wheels for {target} failed:\n" + "\n".join(errors))
    return sorted(path.name for path in into.glob("*.whl"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(out: Path, agent_wheel: Path, targets: list[str]) -> None:
    version = agent_wheel.name.split("-")[1]
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    served = {}
    for target in targets:
        folder = work / "wheels" / target
        folder.mkdir(parents=True)
        wheels = download(target, folder)
        pip = [name for name in wheels if name.startswith("pip-")]
        if len(pip) != 1:
            raise SystemExit(f"agent-bundle: the lock of {target} must pin exactly one pip (installer.in)")
        shutil.copy2(agent_wheel, folder / agent_wheel.name)
        archive = f"arc-agent-{version}-{target}.tar"
        with tarfile.open(work / archive, "w") as tar:
            for name in sorted(wheels + [agent_wheel.name]):
                tar.add(folder / name, arcname=name)
        served[target] = {"archive": archive, "pip": pip[0], "wheels": sorted(wheels + [agent_wheel.name])}
    shutil.rmtree(work / "wheels")
    (work / "targets.json").write_text(json.dumps({"version": version, "targets": served}, indent=2) + "\n")
    names = sorted(path.name for path in work.iterdir())
    (work / "SHA256SUMS").write_text("".join(f"{sha256(work / name)}  {name}\n" for name in names))
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    print(f"agent-bundle: agent {version} for {', '.join(targets)} in {out}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    agent_wheel = Path(argv[1])
    if not re.match(r"^arc_agent-[0-9.]+-py3-none-any\.whl$", agent_wheel.name) or not agent_wheel.is_file():
        raise SystemExit(f"agent-bundle: {agent_wheel} is not arc_agent-VERSION-py3-none-any.whl")
    build(Path(argv[0]), agent_wheel, argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
