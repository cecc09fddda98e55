# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: a minimal client of the control plane's management API (the
# Azure Resource Manager subset, docs/management-api.md) for machine tags. Standard library
# only: urllib and ssl, with TLS verified against the control plane's CA.

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.hybridops.arc.plugins.module_utils._errors import ArmError

API_VERSION = "2024-07-10"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
CERTIFICATE_NOT_SUPPORTED = (
    "tags are managed through the management API, which needs a token; getting one with "
    "service_principal_cert needs an RS256 client assertion that the Python standard library "
    "cannot sign. Use service_principal_secret or access_token for tag management, or leave "
    "tags out (the agent still connects with the certificate)"
)


def check_credentials(certificate=None):
    """Fail early (before any change) for credentials this client cannot use."""
    if certificate:
        raise ArmError("sign-in", CERTIFICATE_NOT_SUPPORTED)


class ArmClient:
    """GET and PATCH of machine resources with a bearer token from the control plane's token
    service (client credentials with a secret) or a given access token."""

    def __init__(
        self,
        base_url,
        ca_file=None,
        tenant_id=None,
        client_id=None,
        client_secret=None,
        access_token=None,
        certificate=None,
        timeout=30,
    ):
        check_credentials(certificate)
        if not access_token and not (client_secret and client_id and tenant_id):
            raise ArmError(
                "sign-in",
                "tags need credentials for the management API: service_principal_id, "
                "service_principal_secret and tenant_id, or access_token",
            )
        if not base_url:
            raise ArmError("sign-in", "the control plane URL is not known; give control_plane_url")
        if not base_url.lower().startswith("https://"):
            raise ArmError("sign-in", "the control plane URL must be https:// (it is %s)" % base_url)
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._secret = client_secret
        self._token = access_token
        self.timeout = timeout
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ArmError("sign-in", "cannot load the control plane CA %s: %s" % (ca_file, error)) from None
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def token(self):
        """The bearer token: the given access token, else one from the token service."""
        if self._token is None:
            url = "%s/%s/oauth2/v2.0/token" % (self.base_url, urllib.parse.quote(self.tenant_id, safe=""))
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self._secret,
                    "scope": MANAGEMENT_SCOPE,
                }
            ).encode("ascii")
            request = urllib.request.Request(  # noqa: S310 - https:// only (checked in __init__)
                url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            document = self._send("get a token", request)
            token = document.get("access_token") if isinstance(document, dict) else None
            if not token:
                raise ArmError("get a token", "the token service answered without an access_token")
            self._token = token
        return self._token

    def get_machine(self, resource_id):
        """The machine resource, or None when it does not exist."""
        try:
            return self._call("GET machine", "GET", resource_id)
        except ArmError as error:
            if error.status == 404:
                return None
            raise

    def update_tags(self, resource_id, tags):
        """Replace the machine's tags (PATCH); returns the machine resource after."""
        return self._call("PATCH machine tags", "PATCH", resource_id, {"tags": tags})

    def _call(self, operation, method, resource_id, body=None):
        url = "%s%s?api-version=%s" % (self.base_url, urllib.parse.quote(resource_id, safe="/"), API_VERSION)
        headers = {"Authorization": "Bearer %s" % self.token(), "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - https://
        return self._send(operation, request)

    def _send(self, operation, request):
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                text = reply.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            raise _http_error(operation, error) from None
        except urllib.error.URLError as error:
            raise ArmError(operation, "cannot reach %s: %s" % (self.base_url, error.reason)) from None
        except (OSError, ssl.SSLError) as error:
            raise ArmError(operation, "cannot reach %s: %s" % (self.base_url, error)) from None
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:
            raise ArmError(operation, "the answer is not JSON: %s" % text[:200]) from None


def _http_error(operation, error):
    """An ArmError from an HTTP error answer: ARM's ``{"error": {"code", "message"}}`` or the
    token service's ``{"error", "error_description"}``."""
    try:
        document = json.loads(error.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, AttributeError):
        document = None
    code = None
    message = "HTTP %d %s" % (error.code, error.reason)
    if isinstance(document, dict):
        found = document.get("error")
        if isinstance(found, dict):
            code = found.get("code")
            message = found.get("message") or message
        elif isinstance(found, str):
            code = found
            message = (document.get("error_description") or message).split("\r\n", 1)[0]
    return ArmError(operation, message, code=code, status=error.code)
