"""Where the machine's identity lives: ``certs/`` (himds:himds 0750).

``identity.key`` (0600) is the private key, ``identity.crt`` (0644) the credential, and
``credential.json`` when that credential expires once himds has renewed it. Root writes them
at ``connect`` and hands them to himds; himds replaces them at renewal. Both go through
:class:`fsutil.Directory`: the directory belongs to himds, so nothing in it is followed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from arc_agent.fsutil import Directory, NotARegularFile
from arc_agent.paths import AgentPaths
from arc_agent.privileges import himds_ids

CERT_MODE = 0o644
PENDING_SUFFIX = ".pending"


class MachineIdentity:
    def __init__(self, paths: AgentPaths) -> None:
        self.paths = paths
        self.key = paths.identity_key
        self.certificate = paths.identity_cert
        self.record = paths.credential_record

    @property
    def pending_key(self) -> Path:
        """A new key, written aside until the control plane has accepted it."""
        return self.key.with_name(self.key.name + PENDING_SUFFIX)

    def _owner(self) -> tuple[int | None, int | None]:
        """Root writes these files for himds: himds owns them. himds writes them as itself."""
        ids = himds_ids() if os.geteuid() == 0 else None
        return (ids[0], ids[1]) if ids is not None else (None, None)

    def install_certificate(self, pem: str) -> None:
        owner, group = self._owner()
        with Directory(self.paths.certs_dir) as certs:
            certs.write_atomic(self.certificate.name, pem.encode(), mode=CERT_MODE, owner=owner, group=group)

    def install_pending_key(self) -> None:
        """The pending key becomes the machine key."""
        with Directory(self.paths.certs_dir) as certs:
            certs.replace(self.pending_key.name, self.key.name)

    def record_expiry(self, not_after: str) -> None:
        owner, group = self._owner()
        data = (json.dumps({"notAfter": not_after}) + "\n").encode()
        with Directory(self.paths.certs_dir) as certs:
            certs.write_atomic(self.record.name, data, mode=CERT_MODE, owner=owner, group=group)

    def recorded_expiry(self) -> str | None:
        """When the credential himds renewed last expires; None when it was never renewed."""
        try:
            with Directory(self.paths.certs_dir) as certs:
                document = json.loads(certs.read_bytes(self.record.name, 4096))
        except (OSError, ValueError):
            return None
        value = document.get("notAfter") if isinstance(document, dict) else None
        return value if isinstance(value, str) and len(value) <= 64 else None

    def discard_pending(self) -> None:
        try:
            with Directory(self.paths.certs_dir) as certs:
                certs.remove(self.pending_key.name)
        except FileNotFoundError:
            pass

    def forget(self) -> None:
        """Remove every identity file (``disconnect``); what is not there is fine."""
        try:
            certs = Directory(self.paths.certs_dir)
        except (FileNotFoundError, NotADirectoryError, NotARegularFile):
            return
        except OSError:
            self.paths.certs_dir.unlink(missing_ok=True)  # a link where the directory belongs
            return
        with certs:
            for path in (
                self.key,
                self.pending_key,
                self.certificate,
                self.record,
                self.paths.legacy_control_plane_ca,
            ):
                certs.remove(path.name)
