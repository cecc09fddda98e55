"""Builds the agent bundle the arc_agent role installs from: for each target (CPython version and
architecture), the agent's runtime already installed (the agent wheel and exactly the locked
wheels it needs on that target, installed by pip here, into a virtual environment's layout),
packed in one compressed archive per target, plus ``targets.json`` (which archive serves which
target, with its SHA-256) and a ``SHA256SUMS`` of every file.

    tools/agent-bundle.py OUT AGENT_WHEEL TARGET...      (make wheelhouse)

TARGET is ``cp<major><minor>-<machine>``, e.g. ``cp311-x86_64``; the pins of a target come from
``agent/locks/cp<major><minor>.txt`` (``make lock``: pinned, hashed, resolved for the Python release
its first line names).
Runs on any controller Python: pip downloads and installs the wheels of the target's Python and
platform, not of its own. Wheels are taken only for glibc up to 2.31 (Debian 11, the oldest
supported host), so one archive serves every supported distribution of that Python and machine.
A host needs no pip and no installer: the role unpacks the archive as /opt/azcmagent, whose
``bin/python3`` is the host's /usr/bin/python3 (docs/agent-packages.md).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
LOCKS = TOP / "agent" / "locks"
TARGET = re.compile(r"^cp3(\d+)-(x86_64|aarch64)$")
OLDEST_GLIBC_MINOR = 31
# Where the role puts the runtime (the real agent's directory): the scripts' interpreter line.
PREFIX = "/opt/azcmagent"
SCRIPT = """#!{prefix}/bin/python3
import sys
from {module} import {function}
if __name__ == "__main__":
    sys.exit({function}())
"""


def platforms(machine: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(OLDEST_GLIBC_MINOR, 16, -1)]
    return tags + ["manylinux2014_" + machine]


def lock_python(target: str) -> tuple[str, str, str]:
    """The target's Python minor, machine and the Python release its lock was resolved for."""
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
    return minor, machine, first.split()[-1]


def pip(target: str, what: str, args: list[str]) -> None:
    """pip for the target's Python and platform (not the controller's)."""
    minor, machine, python = lock_python(target)
    argv = [sys.executable, "-m", "pip", what, "-q", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", python, *args]  # fmt: skip
    for tag in platforms(machine):
        argv += ["--platform", tag]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location")]
        raise SystemExit(f"agent-bundle: pip {what} for {target} failed:\n" + "\n".join(errors))


def download(target: str, into: Path) -> list[str]:
    """The locked wheels of the target, checked against the lock's hashes."""
    lock = LOCKS / f"cp3{lock_python(target)[0]}.txt"
    pip(target, "download", ["--require-hashes", "-d", str(into), "-r", str(lock)])
    return sorted(path.name for path in into.glob("*.whl"))


def scripts(agent_wheel: Path) -> dict[str, str]:
    """The agent's console scripts (name: module:function), from its wheel's entry points."""
    with zipfile.ZipFile(agent_wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.read_string(wheel.read(name).decode())
    return {key: value.strip() for key, value in parser["console_scripts"].items()}


def runtime(target: str, wheels: Path, agent_wheel: Path, tree: Path) -> None:
    """The runtime as the host will have it at PREFIX: a virtual environment of the host's
    /usr/bin/python3 (pyvenv.cfg, bin/python3) with the wheels installed in its site-packages
    and the agent's commands in bin/. The host byte-compiles it when it installs it."""
    minor = lock_python(target)[0]
    site = tree / "lib" / f"python3.{minor}" / "site-packages"
    names = sorted(str(path) for path in wheels.glob("*.whl")) + [str(agent_wheel)]
    pip(target, "install", ["--no-index", "--no-compile", "--target", str(site), *names])
    shutil.rmtree(site / "bin", ignore_errors=True)  # pip's scripts name the controller's Python
    venv = f"home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.{minor}\n"
    (tree / "pyvenv.cfg").write_text(venv)
    (tree / "bin").mkdir()
    os.symlink("/usr/bin/python3", tree / "bin" / "python3")
    os.symlink("python3", tree / "bin" / "python")
    for command, entry in scripts(agent_wheel).items():
        module, function = entry.split(":")
        path = tree / "bin" / command
        path.write_text(SCRIPT.format(prefix=PREFIX, module=module, function=function))
        path.chmod(0o755)


def normalized(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owned by root, modes 0755 (directories, programs) and 0644: the same on every build."""
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    if not member.issym():
        member.mode = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
    return member


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
        wheels, tree = work / "wheels" / target, work / "trees" / target
        wheels.mkdir(parents=True)
        tree.mkdir(parents=True)
        locked = download(target, wheels)
        runtime(target, wheels, agent_wheel, tree)
        archive = f"arc-agent-{version}-{target}.tar.gz"
        with tarfile.open(work / archive, "w:gz") as tar:
            tar.add(tree, arcname=".", filter=normalized)
        served[target] = {
            "archive": archive,
            "sha256": sha256(work / archive),
            "wheels": sorted(locked + [agent_wheel.name]),
        }
    shutil.rmtree(work / "wheels")
    shutil.rmtree(work / "trees")
    (work / "targets.json").write_text(
        json.dumps({"version": version, "prefix": PREFIX, "targets": served}, indent=2) + "\n"
    )
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
