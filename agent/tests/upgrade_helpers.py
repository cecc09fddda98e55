"""Agent packages and bundles for tests: real archives of a runtime whose azcmagent prints its
version (run by this Python), in the bundle shape ``make wheelhouse`` builds."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

from arc_agent.upgrade.store import runtime_target

PYTHON = os.path.realpath(sys.executable)
CLI = "import sys\nprint('azcmagent version %s')\n"


def archive(path: Path, version: str) -> str:
    files = {
        "pyvenv.cfg": f"home = {os.path.dirname(PYTHON)}\ninclude-system-site-packages = false\n",
        "bin/azcmagent": CLI % version,
        "lib/python3/site-packages/arc_agent/__init__.py": f"__version__ = {version!r}\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo("./" + name)
            info.size, info.mode = len(data), 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, PYTHON
        tar.addfile(link)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def agent_bundle(directory: Path, version: str) -> Path:
    """An agent bundle (targets.json, SHA256SUMS, an archive for this machine's target)."""
    directory.mkdir(parents=True)
    target = runtime_target()
    name = f"arc-agent-{version}-{target}.tar.gz"
    digest = archive(directory / name, version)
    (directory / "targets.json").write_text(
        json.dumps({"version": version, "targets": {target: {"archive": name, "sha256": digest}}})
    )
    (directory / "SHA256SUMS").write_text(f"{digest}  {name}\n")
    return directory
