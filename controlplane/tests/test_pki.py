from __future__ import annotations

import ipaddress
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.names import ServerNames, server_names
from arc_controlplane.pki import (
    CA_NAME_PREFIX,
    ServerTls,
    check_key_pair,
    ensure_server_tls,
    not_valid_after,
    read_ca_certificate,
)

FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def names(*extra: str) -> ServerNames:
    return server_names("127.0.0.1", "testhost", extra)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def snapshot(pki: Path) -> dict[str, bytes]:
    return {name: (pki / name).read_bytes() for name in FILES}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return tmp_path / "data" / "pki"


@pytest.fixture
def tls(pki: Path) -> ServerTls:
    return ensure_server_tls(pki, names("arc.example.com", "10.9.8.7"))


def test_ca_is_a_ca(tls: ServerTls, pki: Path) -> None:
    assert tls.ca_created
    ca = load(pki / "ca.pem")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    common_name = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert isinstance(common_name, str)
    assert common_name.startswith(CA_NAME_PREFIX + " ")
    assert ca.issuer == ca.subject
    lifetime = not_valid_after(ca) - datetime.now(UTC)
    assert timedelta(days=3640) < lifetime <= timedelta(days=3650)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_server_certificate_chains_to_the_ca(tls: ServerTls, pki: Path) -> None:
    ca, server = load(pki / "ca.pem"), load(pki / "server.pem")
    assert server.issuer == ca.subject
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert server.signature_hash_algorithm is not None
    ca_key.verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    server.verify_directly_issued_by(ca)

    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = not_valid_after(server) - datetime.now(UTC)
    assert timedelta(days=360) < lifetime <= timedelta(days=365)


def test_server_certificate_names(tls: ServerTls, pki: Path) -> None:
    san = load(pki / "server.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "testhost", "arc.example.com"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.9.8.7"),
    }


def test_server_key_belongs_to_the_certificate(tls: ServerTls, pki: Path) -> None:
    check_key_pair(tls.cert_file, tls.key_file)
    assert tls.cert_file == pki / "server.pem"
    assert tls.key_file == pki / "server.key"
    assert tls.ca_file == pki / "ca.pem"


def test_file_and_directory_modes(tls: ServerTls, pki: Path) -> None:
    assert mode(pki / "ca.key") == 0o600
    assert mode(pki / "server.key") == 0o600
    assert mode(pki / "ca.pem") == 0o644
    assert mode(pki / "server.pem") == 0o644
    assert mode(pki) == 0o700
    assert mode(pki.parent) == 0o700
    assert sorted(p.name for p in pki.iterdir()) == sorted(FILES)  # no temp files left


def test_keys_are_0600_even_with_a_permissive_umask(pki: Path) -> None:
    previous = os.umask(0)
    try:
        ensure_server_tls(pki, names())
    finally:
        os.umask(previous)
    assert mode(pki / "ca.key") == 0o600
    assert mode(pki / "server.key") == 0o600
    assert mode(pki) == 0o700


def test_second_call_reuses_everything(tls: ServerTls, pki: Path) -> None:
    before = snapshot(pki)
    again = ensure_server_tls(pki, names("arc.example.com", "10.9.8.7"))
    assert not again.ca_created
    assert again.issued_because is None
    assert snapshot(pki) == before


def test_fewer_wanted_names_do_not_reissue(tls: ServerTls, pki: Path) -> None:
    before = snapshot(pki)
    assert ensure_server_tls(pki, names()).issued_because is None
    assert snapshot(pki) == before


def test_missing_name_reissues_the_server_certificate_only(tls: ServerTls, pki: Path) -> None:
    before = snapshot(pki)
    again = ensure_server_tls(pki, names("arc.example.com", "10.9.8.7", "new.example.com"))
    assert again.issued_because is not None
    assert "new.example.com" in again.issued_because
    after = snapshot(pki)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["ca.key"] == before["ca.key"]
    assert after["server.pem"] != before["server.pem"]
    assert after["server.key"] != before["server.key"]
    san = load(pki / "server.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "new.example.com" in san.get_values_for_type(x509.DNSName)


def test_reissues_when_fewer_than_30_days_remain(tls: ServerTls, pki: Path) -> None:
    before = snapshot(pki)
    later = datetime.now(UTC) + timedelta(days=340)
    again = ensure_server_tls(pki, names("arc.example.com", "10.9.8.7"), now=later)
    assert again.issued_because is not None
    assert "expires" in again.issued_because
    assert snapshot(pki)["server.pem"] != before["server.pem"]
    assert snapshot(pki)["ca.pem"] == before["ca.pem"]
    assert not_valid_after(load(pki / "server.pem")) > later + timedelta(days=300)


def test_reissues_when_the_ca_changed(tls: ServerTls, pki: Path) -> None:
    (pki / "ca.pem").unlink()
    (pki / "ca.key").unlink()
    again = ensure_server_tls(pki, names("arc.example.com", "10.9.8.7"))
    assert again.ca_created
    assert again.issued_because == "the existing one was not issued by the current CA"
    load(pki / "server.pem").verify_directly_issued_by(load(pki / "ca.pem"))


def test_replaces_a_corrupt_server_certificate(tls: ServerTls, pki: Path) -> None:
    (pki / "server.pem").write_text("garbage", encoding="ascii")
    again = ensure_server_tls(pki, names())
    assert again.issued_because is not None
    assert "unusable" in again.issued_because
    check_key_pair(pki / "server.pem", pki / "server.key")


@pytest.mark.parametrize(("keep", "lost"), [("ca.pem", "ca.key"), ("ca.key", "ca.pem")])
def test_half_a_ca_is_an_error_not_silently_replaced(tls: ServerTls, pki: Path, keep: str, lost: str) -> None:
    kept = (pki / keep).read_bytes()
    (pki / lost).unlink()
    with pytest.raises(ControlPlaneError) as info:
        ensure_server_tls(pki, names())
    assert f"{pki / lost} does not" in str(info.value)
    assert (pki / keep).read_bytes() == kept


def test_ca_key_that_does_not_match(tls: ServerTls, pki: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (pki / "ca.key").write_bytes(other)
    with pytest.raises(ControlPlaneError, match="does not belong to"):
        ensure_server_tls(pki, names())


def test_read_ca_certificate(tls: ServerTls, pki: Path) -> None:
    assert read_ca_certificate(pki) == (pki / "ca.pem").read_bytes()


def test_read_ca_certificate_without_a_ca(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError) as info:
        read_ca_certificate(tmp_path / "pki")
    assert str(info.value) == (
        f"no CA in {tmp_path / 'pki'}; start 'arc-controlplane serve' once to create it"
    )


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="ascii")
    with pytest.raises(ControlPlaneError, match=r"^cannot set up .*/file: Not a directory$"):
        ensure_server_tls(blocker / "data" / "pki", names())


def test_check_key_pair_rejects_a_foreign_key(tls: ServerTls, pki: Path) -> None:
    with pytest.raises(ControlPlaneError, match="does not belong to the certificate"):
        check_key_pair(pki / "server.pem", pki / "ca.key")


def test_check_key_pair_rejects_unreadable_and_garbage(tls: ServerTls, pki: Path, tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match=r"^cannot read --cert .*: No such file or directory$"):
        check_key_pair(tmp_path / "missing.pem", pki / "server.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello", encoding="ascii")
    with pytest.raises(ControlPlaneError, match="does not hold a PEM certificate"):
        check_key_pair(garbage, pki / "server.key")
    with pytest.raises(ControlPlaneError, match="does not hold a PEM private key"):
        check_key_pair(pki / "server.pem", garbage)


def test_check_key_pair_rejects_an_encrypted_key(tls: ServerTls, pki: Path, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key((pki / "server.key").read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ControlPlaneError, match="encrypted key"):
        check_key_pair(pki / "server.pem", encrypted)
