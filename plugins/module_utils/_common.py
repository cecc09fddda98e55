# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: the control plane and credential options that modules share
# (documented once in the hybridops.arc._control_plane doc fragment) and the base that merges them.

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hybridops.arc.plugins.module_utils._desired import CREDENTIALS, REQUIRES

CONTROL_PLANE_ARGUMENT_SPEC = dict(
    control_plane_url=dict(type="str"),
    control_plane_ca=dict(type="path"),
    tenant_id=dict(type="str"),
    service_principal_id=dict(type="str"),
    service_principal_secret=dict(type="str", no_log=True),
    service_principal_cert=dict(type="path"),
    access_token=dict(type="str", no_log=True),
)

# The credential rule (_desired.CREDENTIALS, _desired.REQUIRES) as Ansible's argument relations.
CONTROL_PLANE_MUTUALLY_EXCLUSIVE = [list(CREDENTIALS)]
CONTROL_PLANE_REQUIRED_BY = dict(REQUIRES)


class ArcModule(AnsibleModule):
    """AnsibleModule with the shared control plane and credential options merged in."""

    def __init__(self, argument_spec, mutually_exclusive=None, required_by=None, **kwargs):
        spec = dict(CONTROL_PLANE_ARGUMENT_SPEC)
        spec.update(argument_spec)
        exclusive = list(CONTROL_PLANE_MUTUALLY_EXCLUSIVE) + list(mutually_exclusive or [])
        by = dict(CONTROL_PLANE_REQUIRED_BY)
        by.update(required_by or {})
        super().__init__(argument_spec=spec, mutually_exclusive=exclusive, required_by=by, **kwargs)

    def control_plane_flags(self):
        """``--control-plane-url`` and ``--control-plane-ca`` when given."""
        flags = []
        if self.params["control_plane_url"]:
            flags += ["--control-plane-url", self.params["control_plane_url"]]
        if self.params["control_plane_ca"]:
            flags += ["--control-plane-ca", self.params["control_plane_ca"]]
        return flags

    def credential_flags(self):
        """(argv flags, secrets): identifiers go on the command line, secrets only in the
        ``--config`` file that the azcmagent wrapper writes with mode 0600."""
        params = self.params
        flags = []
        secrets = {}
        if params["tenant_id"]:
            flags += ["--tenant-id", params["tenant_id"]]
        if params["service_principal_id"]:
            flags += ["--service-principal-id", params["service_principal_id"]]
        if params["service_principal_cert"]:
            flags += ["--service-principal-cert", params["service_principal_cert"]]
        if params["service_principal_secret"]:
            secrets["service-principal-secret"] = params["service_principal_secret"]
        if params["access_token"]:
            secrets["access-token"] = params["access_token"]
        return flags, secrets
