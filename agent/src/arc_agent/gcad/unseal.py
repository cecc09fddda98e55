"""``python -m arc_agent.gcad.unseal``: decrypt an assignment's protected parameters in a process
of its own, so that gcad never loads the ``cryptography`` package (as ``verify``). Reads
``{"envelope", "thumbprint", "folder"}`` as JSON on standard input: the CMS enveloped message
(base64 of DER) the control plane made to the machine's extension certificate, that
certificate's thumbprint, and the folder with ``<thumbprint>.crt`` and ``.prv``
(docs/machine-configuration.md, "Protected parameters"). Writes the parameters (``[{"name",
"value"}]``) as JSON on standard output and exits 0; exits 1 with the reason on standard error."""

from __future__ import annotations

import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7


class Unsealable(Exception):
    """The protected parameters cannot be decrypted here (the message says why)."""


def unseal(envelope: str, thumbprint: str, folder: Path) -> list[dict[str, str]]:
    if not thumbprint.isalnum():
        raise Unsealable(f"the certificate thumbprint {thumbprint[:64]!r} is not one")
    crt, prv = folder / f"{thumbprint}.crt", folder / f"{thumbprint}.prv"
    if not crt.is_file() or not prv.is_file():
        raise Unsealable(
            f"they were encrypted to the extension certificate {thumbprint}, which this machine does not"
            " have (a new one was made since): send the assignment with its protected parameters again"
        )
    try:
        certificate = x509.load_pem_x509_certificate(crt.read_bytes())
        key = serialization.load_pem_private_key(prv.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise Unsealable(f"{prv} is not an RSA key")
        der = base64.b64decode(envelope, validate=True)
        plain = pkcs7.pkcs7_decrypt_der(der, certificate, key, [])
        document: Any = json.loads(plain)
    except (OSError, ValueError, binascii.Error) as exc:
        why = f"they cannot be decrypted with the extension certificate {thumbprint}: {exc}"
        raise Unsealable(why) from None
    parameters = document.get("configurationProtectedParameter") if isinstance(document, dict) else None
    if not isinstance(parameters, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("value"), str)
        for p in parameters
    ):
        raise Unsealable("the decrypted document is not a list of parameters (name, value)")
    return [{"name": p["name"], "value": p["value"]} for p in parameters]


def main() -> int:
    request = json.load(sys.stdin)
    try:
        parameters = unseal(str(request["envelope"]), str(request["thumbprint"]), Path(request["folder"]))
    except (Unsealable, KeyError) as refused:
        sys.stderr.write(f"{refused}\n")
        return 1
    json.dump(parameters, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
