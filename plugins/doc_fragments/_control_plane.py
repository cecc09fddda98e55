# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: the control plane and credential options (one spec in
# plugins/module_utils/_common.py).


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  control_plane_url:
    description:
      - URL of the control plane, V(https://HOST[:PORT]), passed to C(azcmagent) as C(--control-plane-url).
      - When omitted, the agent uses its configured C(controlplane.url) (see M(hybridops.arc.agent_config));
        on a connected machine, the control plane it is connected to.
    type: str
  control_plane_ca:
    description:
      - Path B(on the managed host) of the PEM file with the control plane's CA certificate, passed as
        C(--control-plane-ca).
      - When omitted, the agent uses its configured C(controlplane.cafile); on a connected machine, the copy
        of the CA it kept at connect time.
    type: path
  tenant_id:
    description:
      - The tenant (a GUID) of the service principal.
      - Required with O(service_principal_id); with O(access_token) the agent takes it from the token.
    type: str
  service_principal_id:
    description:
      - Client id of the service principal to authenticate with, together with O(service_principal_secret) or
        O(service_principal_cert).
    type: str
  service_principal_secret:
    description:
      - The service principal's client secret.
      - It reaches C(azcmagent) only in a C(--config) file of mode V(0600) that is deleted right after the
        command, never on its command line, and is never logged or returned.
      - Mutually exclusive with O(service_principal_cert) and O(access_token).
    type: str
  service_principal_cert:
    description:
      - Path B(on the managed host) of a PEM file holding the service principal's certificate and its
        unencrypted private key.
      - Mutually exclusive with O(service_principal_secret) and O(access_token).
    type: path
  access_token:
    description:
      - An access token of the control plane's token service for V(https://management.azure.com/).
      - Travels like O(service_principal_secret) (a V(0600) C(--config) file), never logged or returned.
      - Mutually exclusive with O(service_principal_secret) and O(service_principal_cert).
    type: str
"""
