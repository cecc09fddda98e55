"""The machine key as himds uses it: RS256 through the system's libcrypto, the same signatures
as the cryptography package makes, clear errors for bad key files, and a new key generated in
a child process."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.identity import keys
from arc_agent.identity.jws import AssertionSigner, b64url
from arc_agent.identity.keys import CryptographySigner, generate_machine_key, save_private_key
from arc_agent.identity.libcrypto import LibcryptoRsaKey
from arc_agent.identity.signer import generate_key_file, load_machine_signer


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_machine_key()


def test_libcrypto_signs_exactly_as_the_cryptography_package(rsa_key: rsa.RSAPrivateKey) -> None:
    # PKCS #1 v1.5 is deterministic: both must give the very same bytes.
    data = b"header.claims"
    ours = LibcryptoRsaKey(pem(rsa_key)).sign(data)
    assert ours == CryptographySigner(rsa_key).sign(data)
    rsa_key.public_key().verify(ours, data, padding.PKCS1v15(), hashes.SHA256())


def test_a_traditional_rsa_pem_loads_too(rsa_key: rsa.RSAPrivateKey) -> None:
    formats = serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL
    traditional = rsa_key.private_bytes(*formats, serialization.NoEncryption())
    signature = LibcryptoRsaKey(traditional).sign(b"x")
    rsa_key.public_key().verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())


def test_root_writes_the_key_for_himds_only(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    monkeypatch.setattr(keys, "himds_ids", lambda: (4242, 4343))  # the himds user of a host
    path = tmp_path / "identity.key"
    save_private_key(path, rsa_key)
    status = path.stat()
    assert (stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid) == (0o600, 4242, 4343)


def test_machine_assertions_verify_with_the_public_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "identity.key"
    save_private_key(path, rsa_key)
    signer = AssertionSigner(load_machine_signer(path), "vm-1", "https://cp/agent")
    token = signer.assertion(now=1_000_000)
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(_unb64(header_b64))
    claims = json.loads(_unb64(claims_b64))
    assert header == {"kid": "vm-1", "alg": "RS256", "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == "vm-1" and claims["aud"] == "https://cp/agent"
    assert claims["exp"] - claims["iat"] == 600 and len(claims["jti"]) == 32
    rsa_key.public_key().verify(
        _unb64(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    # Reused until two minutes before it expires, then a new one.
    assert signer.assertion(now=1_000_000 + 470) == token
    assert signer.assertion(now=1_000_000 + 481) != token
    # A clock that went back more than a minute: a new one, saying what the clock says now.
    current = signer.assertion(now=1_000_000 + 481)
    assert signer.assertion(now=1_000_000 + 481 - 59) == current
    earlier = signer.assertion(now=1_000_000 + 481 - 86_400)
    assert earlier != current
    assert json.loads(_unb64(earlier.split(".")[1]))["iat"] == 1_000_000 + 481 - 86_400


def test_signing_from_many_threads_at_once(rsa_key: rsa.RSAPrivateKey) -> None:
    key = LibcryptoRsaKey(pem(rsa_key))
    expected = {i: CryptographySigner(rsa_key).sign(str(i).encode()) for i in range(40)}
    results: dict[int, bytes] = {}

    def work(start: int) -> None:
        for i in range(start, 40, 4):
            results[i] = key.sign(str(i).encode())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not a key at all", id="garbage"),
        pytest.param(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="truncated"),
        pytest.param(pem(ec.generate_private_key(ec.SECP256R1())), id="ec-key"),
        pytest.param(pem(rsa.generate_private_key(65537, 2048), password=b"pw"), id="encrypted"),
    ],
)
def test_a_bad_key_file_names_the_way_out(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(content)
    with pytest.raises(AzcmError) as caught:
        load_machine_signer(path)
    assert caught.value.code == ErrorCode.PRIVATE_KEY_UNAVAILABLE
    assert str(path) in caught.value.message
    assert "disconnect --force-local-only" in caught.value.message


def test_a_missing_key_file_names_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(AzcmError) as caught:
        load_machine_signer(tmp_path / "absent.key")
    assert caught.value.code == ErrorCode.PRIVATE_KEY_UNAVAILABLE
    assert "No such file" in caught.value.message and "--force-local-only" in caught.value.message


def test_a_new_key_is_generated_in_a_child_process(tmp_path: Path) -> None:
    path = tmp_path / "identity.key.pending"
    public = generate_key_file(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert (
        public
        == key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600


def test_key_generation_failure_is_an_azcm_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(AzcmError) as caught:
        generate_key_file(tmp_path / "a-file" / "identity.key.pending")
    assert caught.value.code == ErrorCode.RSA_KEY_GENERATION_FAILED
    assert "a-file" in caught.value.message


def test_himds_does_not_load_the_cryptography_package() -> None:
    """Its memory budget depends on it (docs/himds.md, "Memory")."""
    probe = (
        "import sys, arc_agent.himds.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', '_cffi_backend')))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_b64url_has_no_padding() -> None:
    assert b64url(b"\xff\xfe") == "__4"
