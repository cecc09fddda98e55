# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: what the extension modules decide (docs/modules.md, "extension"):
# the requested properties in ARM's shape, how they differ from the extension resource, and the
# one place that can read protected settings back: the machine itself, which keeps the ones its
# handler got in the handler's settings file, encrypted to the machine's extension certificate.

import base64
import glob
import json
import os

from ansible_collections.hybridops.arc.plugins.module_utils._files import read_text

LIB_DIR = "/var/lib/waagent"
# Module option -> ARM property, for the properties compared as they are.
PROPERTIES = (
    ("publisher", "publisher"),
    ("type", "type"),
    ("type_handler_version", "typeHandlerVersion"),
    ("auto_upgrade_minor_version", "autoUpgradeMinorVersion"),
    ("enable_automatic_upgrade", "enableAutomaticUpgrade"),
    ("force_update_tag", "forceUpdateTag"),
    ("settings", "settings"),
)
CASE_INSENSITIVE = ("publisher", "type")
HIDDEN = "(hidden: protected settings are write-only)"


def requested_properties(params):
    """The ``properties`` of the PUT: the options given, in ARM's names."""
    properties = {}
    for option, name in PROPERTIES:
        if params.get(option) is not None:
            properties[name] = params[option]
    if params.get("protected_settings") is not None:
        properties["protectedSettings"] = params["protected_settings"]
    return properties


def differences(current, params, machine_protected):
    """The ARM properties that must change: [name, ...]. ``current`` is the extension resource
    (None when there is none); an option not given is not compared. Protected settings, which
    the API never returns, are compared with ``machine_protected`` (what the machine's handler
    got, None when it cannot be read): unknown counts as different."""
    if current is None:
        return ["(new extension)"]
    properties = current.get("properties") or {}
    changed = []
    for option, name in PROPERTIES:
        wanted = params.get(option)
        if wanted is None:
            continue
        have = properties.get(name)
        if option in CASE_INSENSITIVE:
            same = str(have or "").lower() == str(wanted).lower()
        else:
            same = have == wanted
        if not same:
            changed.append(name)
    if params.get("protected_settings") is not None and machine_protected != params["protected_settings"]:
        changed.append("protectedSettings")
    return changed


def view(resource, protected_given):
    """The properties as the diff shows them (protected settings never, only that they are set)."""
    properties = dict((resource or {}).get("properties") or {})
    shown = dict((name, properties.get(name)) for _option, name in PROPERTIES)
    shown["provisioningState"] = properties.get("provisioningState")
    if protected_given:
        shown["protectedSettings"] = HIDDEN
    return shown


def handler_settings_file(publisher, type_, lib_dir=LIB_DIR):
    """The newest ``config/<seq>.settings`` of the handler on this machine, or None."""
    newest = None
    for folder in glob.glob(
        os.path.join(glob.escape(lib_dir), glob.escape("%s.%s" % (publisher, type_)) + "-*")
    ):
        for path in glob.glob(os.path.join(glob.escape(folder), "config", "*.settings")):
            stem = os.path.basename(path)[: -len(".settings")]
            if stem.isdigit() and (newest is None or int(stem) > newest[0]):
                newest = (int(stem), path)
    return newest[1] if newest else None


def machine_protected_settings(run_command, publisher, type_, lib_dir=LIB_DIR):
    """The protected settings the machine's handler got last, decrypted with the machine's key
    (``openssl smime``, as handlers decrypt them); None when there are none or they cannot be read
    (not root, no handler yet, no openssl). ``run_command(argv, data)`` -> (rc, stdout bytes)."""
    path = handler_settings_file(publisher, type_, lib_dir)
    if path is None:
        return None
    try:
        handler = json.loads(read_text(path))["runtimeSettings"][0]["handlerSettings"]
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return decrypt_envelope(
        run_command, handler.get("protectedSettings"), handler.get("protectedSettingsCertThumbprint"), lib_dir
    )


def decrypt_envelope(run_command, blob, thumbprint, lib_dir=LIB_DIR):
    """A JSON object the control plane encrypted to the machine's extension certificate
    (``blob``: base64 of a CMS envelope; ``thumbprint``: the certificate's), decrypted with
    ``openssl smime`` and the certificate's key in ``lib_dir``: {} when there is no blob, None
    when it cannot be read (not root, no key, no openssl)."""
    if not blob:
        return {}
    if not thumbprint or not str(thumbprint).isalnum():
        return None
    crt, prv = (os.path.join(lib_dir, "%s.%s" % (thumbprint, suffix)) for suffix in ("crt", "prv"))
    try:
        der = base64.b64decode(blob)
    except (TypeError, ValueError):
        return None
    argv = ["openssl", "smime", "-decrypt", "-inform", "DER", "-recip", crt, "-inkey", prv]
    rc, out = run_command(argv, der)
    if rc != 0:
        return None
    try:
        value = json.loads(out)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
