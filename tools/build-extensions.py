"""Builds the extension handler packages shipped with the repository (docs/customscript.md): one
zip per handler and version, byte for byte the same from the same sources (fixed times, sorted
members, modes from the sources), and a ``SHA256SUMS``.

    tools/build-extensions.py OUT        (make extensions)

Each package is published into a control plane with ``arc-controlplane extension publish``,
which signs it with that control plane's package-signing key; agents check the hash and the
signature before anything of it runs (docs/extensions.md, "The extension catalogue").
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
PACKAGES = (
    # (source folder, publisher, type, versions built from it)
    ("extensions/customscript", "Microsoft.Azure.Extensions", "CustomScript", ("2.1.0", "2.2.0")),
)
EPOCH = (2026, 1, 1, 0, 0, 0)


def package_name(publisher: str, type_: str, version: str) -> str:
    return f"{publisher}.{type_}-{version}.zip"


def build(source: Path, target: Path, version: str) -> None:
    """``source``'s files as a handler package, with the version in ``version.json``."""
    temporary = target.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), EPOCH)
            info.external_attr = (0o100755 if path.stat().st_mode & 0o111 else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
        info = zipfile.ZipInfo("version.json", EPOCH)
        info.external_attr = 0o100644 << 16
        archive.writestr(info, json.dumps({"version": version}) + "\n")
    temporary.replace(target)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: build-extensions.py OUT\n")
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    sums = []
    for folder, publisher, type_, versions in PACKAGES:
        for version in versions:
            target = out / package_name(publisher, type_, version)
            build(TOP / folder, target, version)
            sums.append(f"{hashlib.sha256(target.read_bytes()).hexdigest()}  {target.name}\n")
    (out / "SHA256SUMS").write_text("".join(sums))
    sys.stdout.write(f"{len(sums)} extension packages in {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
