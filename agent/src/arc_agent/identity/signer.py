"""The machine key as himds uses it: a signer for its assertions, and a new key at renewal.

Signing goes through the system's libcrypto (``identity.libcrypto``), so himds does
not load the ``cryptography`` package and its 10 MiB; where no libcrypto can be bound, it
falls back to that package. A new key (renewal, every few weeks) is generated in a short-lived
child process (``python -m arc_agent.identity.keygen``) with the ``cryptography`` package, so
that it never stays in himds's memory either.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.identity.jws import Signer
from arc_agent.identity.keyfile import damaged_key, read_machine_key


def load_machine_signer(path: Path) -> Signer:
    """An RS256 signer over the machine key in ``path``."""
    from arc_agent.identity.libcrypto import LibcryptoRsaKey, LibcryptoUnavailable

    pem = read_machine_key(path)
    try:
        return LibcryptoRsaKey(pem)
    except LibcryptoUnavailable:
        from arc_agent.identity.keys import CryptographySigner, parse_private_key

        return CryptographySigner(parse_private_key(pem, path))
    except ValueError:
        raise damaged_key(path) from None


def generate_key_file(path: Path) -> str:
    """A new machine key written to ``path`` (mode as ``save_private_key``); its public PEM."""
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, a path we chose; no shell
            [sys.executable, "-m", "arc_agent.identity.keygen", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        message = f"cannot generate the machine key: {exc}"
        raise AzcmError(ErrorCode.RSA_KEY_GENERATION_FAILED, message) from None
    if done.returncode != 0 or "BEGIN PUBLIC KEY" not in done.stdout:
        detail = done.stderr.strip() or f"exit code {done.returncode}"
        raise AzcmError(ErrorCode.RSA_KEY_GENERATION_FAILED, f"cannot generate the machine key: {detail}")
    return done.stdout
