# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The extension modules' decisions, and the read-back of protected settings from the machine's
# handler settings file with the real openssl (the boundary), encrypted as the control plane does.

import base64
import datetime
import json
import subprocess

from ansible_collections.hybridops.arc.plugins.module_utils._extension import (
    HIDDEN,
    differences,
    handler_settings_file,
    machine_protected_settings,
    requested_properties,
    view,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PARAMS = dict(
    publisher="Microsoft.Azure.Extensions",
    type="CustomScript",
    type_handler_version="2.1",
    auto_upgrade_minor_version=None,
    enable_automatic_upgrade=None,
    force_update_tag=None,
    settings={"timestamp": 1},
    protected_settings=None,
)
CURRENT = {
    "name": "CustomScript",
    "properties": {
        "publisher": "microsoft.azure.extensions",
        "type": "customscript",
        "typeHandlerVersion": "2.1",
        "settings": {"timestamp": 1},
        "provisioningState": "Succeeded",
    },
}


def test_only_the_options_given_are_sent_and_compared():
    assert requested_properties(PARAMS) == {
        "publisher": "Microsoft.Azure.Extensions",
        "type": "CustomScript",
        "typeHandlerVersion": "2.1",
        "settings": {"timestamp": 1},
    }
    assert differences(CURRENT, PARAMS, None) == [], "publisher and type compare without case"
    assert differences(None, PARAMS, None) == ["(new extension)"]
    assert differences(
        CURRENT, dict(PARAMS, settings={"timestamp": 2}, type_handler_version="2.2"), None
    ) == [
        "typeHandlerVersion",
        "settings",
    ]
    assert differences(CURRENT, dict(PARAMS, auto_upgrade_minor_version=True), None) == [
        "autoUpgradeMinorVersion"
    ]


def test_protected_settings_compare_with_the_machines_copy_and_unknown_is_a_change():
    wanted = dict(PARAMS, protected_settings={"commandToExecute": "x"})
    assert differences(CURRENT, wanted, {"commandToExecute": "x"}) == []
    assert differences(CURRENT, wanted, {"commandToExecute": "y"}) == ["protectedSettings"]
    assert differences(CURRENT, wanted, None) == ["protectedSettings"]
    shown = view(dict(CURRENT, properties=dict(CURRENT["properties"], protectedSettings={"a": 1})), True)
    assert shown["protectedSettings"] == HIDDEN and shown["typeHandlerVersion"] == "2.1"


def machine_certificate(lib):
    """The machine's extension certificate and key, as extd keeps them (<thumbprint>.crt/.prv)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "extension certificate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    (lib / ("%s.crt" % thumbprint)).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (lib / ("%s.prv" % thumbprint)).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return thumbprint


def settings_file(lib, version, sequence, protected, thumbprint):
    folder = lib / ("Microsoft.Azure.Extensions.CustomScript-%s" % version) / "config"
    folder.mkdir(parents=True, exist_ok=True)
    crt = lib / ("%s.crt" % thumbprint)
    encrypted = subprocess.run(
        ["openssl", "smime", "-encrypt", "-outform", "DER", "-aes256", str(crt)],
        input=json.dumps(protected).encode(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    handler = {
        "publicSettings": {},
        "protectedSettings": base64.b64encode(encrypted).decode(),
        "protectedSettingsCertThumbprint": thumbprint,
    }
    path = folder / ("%d.settings" % sequence)
    path.write_text(json.dumps({"runtimeSettings": [{"handlerSettings": handler}]}))
    return path


def openssl(argv, data):
    done = subprocess.run(argv, input=data, capture_output=True, check=False)
    return done.returncode, done.stdout


def test_the_machines_copy_is_the_newest_settings_file_decrypted_with_openssl(tmp_path):
    thumbprint = machine_certificate(tmp_path)
    settings_file(tmp_path, "2.1.0", 2, {"commandToExecute": "old"}, thumbprint)
    newest = settings_file(tmp_path, "2.1.0", 10, {"commandToExecute": "new"}, thumbprint)
    lib = str(tmp_path)
    assert handler_settings_file("Microsoft.Azure.Extensions", "CustomScript", lib) == str(newest)
    read = machine_protected_settings(openssl, "Microsoft.Azure.Extensions", "CustomScript", lib)
    assert read == {"commandToExecute": "new"}


def test_what_cannot_be_read_back_is_unknown(tmp_path):
    lib = str(tmp_path)
    assert machine_protected_settings(openssl, "Contoso", "Nothing", lib) is None  # no handler
    thumbprint = machine_certificate(tmp_path)
    settings_file(tmp_path, "2.1.0", 1, {"commandToExecute": "x"}, thumbprint)
    (tmp_path / ("%s.prv" % thumbprint)).write_text("not a key")
    assert machine_protected_settings(openssl, "Microsoft.Azure.Extensions", "CustomScript", lib) is None
