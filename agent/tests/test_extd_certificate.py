"""The extension certificate (docs/extensions.md): made once, then found again by its thumbprint,
which extd reads without the ``cryptography`` package (it starts on demand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from arc_agent.extd.certificate import load_or_create, pem_thumbprint


def test_the_certificate_is_made_once_and_found_by_its_thumbprint(tmp_path: Path) -> None:
    made = load_or_create(tmp_path)
    assert load_or_create(tmp_path) == made
    certificate = x509.load_pem_x509_certificate(made[1].encode())
    assert made[0] == certificate.fingerprint(hashes.SHA1()).hex().upper()
    assert oct((tmp_path / f"{made[0]}.prv").stat().st_mode & 0o777) == "0o600"
    # a file that is not the certificate its name says is not taken: a new one is made
    (tmp_path / f"{made[0]}.crt").write_text("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
    again = load_or_create(tmp_path)
    assert again[0] != made[0] and pem_thumbprint(again[1].encode()) == again[0]
    assert pem_thumbprint(b"no certificate") is None


def test_finding_the_certificate_does_not_load_cryptography(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    probe = (
        "import sys; from pathlib import Path; from arc_agent.extd.certificate import load_or_create;"
        f" load_or_create(Path({str(tmp_path)!r}));"
        " print(any(name.startswith('cryptography') for name in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
    extd = "import sys, arc_agent.extd.main; print(any(n.startswith('cryptography') for n in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", extd], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False", "extd's start imports cryptography"
