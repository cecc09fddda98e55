# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: a minimal client of the control plane's management API (the
# Azure Resource Manager subset, docs/management-api.md) for machine tags and extensions, with
# ARM's long-running operations. Standard library only: urllib and ssl, with TLS verified
# against the control plane's CA.

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.hybridops.arc.plugins.module_utils._errors import ArmError

API_VERSION = "2024-07-10"
GUEST_CONFIGURATION_API_VERSION = "2024-04-05"
GUEST_CONFIGURATION = "/providers/microsoft.guestconfiguration/"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
CERTIFICATE_NOT_SUPPORTED = (
    "tags and extensions are managed through the management API, which needs a token; getting one "
    "with service_principal_cert needs an RS256 client assertion that the Python standard library "
    "cannot sign. Use service_principal_secret or access_token for tags and extensions, or leave "
    "tags out (the agent still connects with the certificate)"
)
# The control plane's CA as the agent copied it at connect time (root's file).
CA_COPY = "/var/opt/azcmagent/connection-ca.pem"
TERMINAL = ("Succeeded", "Failed", "Canceled")


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
                "the management API needs credentials: service_principal_id, "
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

    def get_resource(self, operation, resource_id):
        """Any resource below the control plane (an extension, a list), or None when it does not exist."""
        try:
            return self._call(operation, "GET", resource_id)
        except ArmError as error:
            if error.status == 404:
                return None
            raise

    def list_resources(self, operation, resource_id):
        """Every entry of a paged list (``value``, following ``nextLink`` on the control plane)."""
        entries = []
        document = self._call(operation, "GET", resource_id)
        while True:
            entries.extend(document.get("value") or [])
            link = document.get("nextLink")
            if not link:
                return entries
            document = self._send(operation, self._request("GET", self._own_url(operation, link)))

    def change(self, operation, method, resource_id, body=None, wait=True, timeout=600):
        """PUT, PATCH or DELETE as a long-running operation: the answer and, with ``wait``, the
        operation polled (``Azure-AsyncOperation``, else ``Location``) until it ends or ``timeout``
        seconds pass. Returns (status of the operation or None when not waited, its error or None)."""
        request = self._request(method, self._resource_url(resource_id), body)
        _answer, headers, _status = self._send(operation, request, with_headers=True)
        link = headers.get("azure-asyncoperation") or headers.get("location")
        if not wait or not link:
            return None, None
        url = self._own_url(operation, link)
        deadline = time.monotonic() + timeout
        while True:
            document, headers, http_status = self._send(
                operation, self._request("GET", url), with_headers=True
            )
            status = document.get("status") if isinstance(document, dict) else None
            # An operation resource says its status; a Location poll answers 202 until it is done.
            if status in TERMINAL or (status is None and http_status in (200, 204)):
                return status or "Succeeded", (document or {}).get("error")
            if time.monotonic() >= deadline:
                raise ArmError(
                    operation,
                    "the operation did not end within %d s (it is %s); raise timeout, or set wait=false "
                    "and look again later" % (timeout, status or "running"),
                    code="OperationTimeout",
                )
            time.sleep(min(_retry_after(headers), max(0.2, deadline - time.monotonic())))

    def wait_for_state(self, operation, resource_id, timeout):
        """The resource once its ``provisioningState`` is Succeeded, Failed or Canceled (None once
        it is gone), polled every second for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            resource = self.get_resource(operation, resource_id)
            state = ((resource or {}).get("properties") or {}).get("provisioningState")
            if resource is None or state in TERMINAL:
                return resource
            if time.monotonic() >= deadline:
                raise ArmError(
                    operation, "%s is still %s after %d s; raise timeout" % (resource_id, state, timeout),
                    code="OperationTimeout",
                )  # fmt: skip
            time.sleep(1)

    def put_resource(self, operation, resource_id, body):
        """A synchronous PUT (a guest configuration assignment): the resource the answer holds."""
        return self._call(operation, "PUT", resource_id, body)

    def delete_resource(self, operation, resource_id):
        """A synchronous DELETE; True when there was something to delete (200), False (204) when not."""
        _answer, _headers, status = self._send(
            operation, self._request("DELETE", self._resource_url(resource_id)), with_headers=True
        )
        return status == 200

    def _resource_url(self, resource_id):
        version = (
            GUEST_CONFIGURATION_API_VERSION if GUEST_CONFIGURATION in resource_id.lower() else API_VERSION
        )
        return "%s%s?api-version=%s" % (self.base_url, urllib.parse.quote(resource_id, safe="/"), version)

    def _own_url(self, operation, link):
        """``link`` (an operation or next page) when it points at the control plane, never elsewhere
        (the bearer token goes with it)."""
        if not link.lower().startswith(self.base_url.lower() + "/"):
            raise ArmError(operation, "the control plane sent a link to another server: %s" % link[:200])
        return link

    def _request(self, method, url, body=None):
        headers = {"Authorization": "Bearer %s" % self.token(), "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - https://

    def _call(self, operation, method, resource_id, body=None):
        return self._send(operation, self._request(method, self._resource_url(resource_id), body))

    def _send(self, operation, request, with_headers=False):
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                text = reply.read().decode("utf-8")
                headers = dict((name.lower(), value) for name, value in reply.headers.items())
                http_status = reply.status
        except urllib.error.HTTPError as error:
            raise _http_error(operation, error) from None
        except urllib.error.URLError as error:
            raise ArmError(operation, "cannot reach %s: %s" % (self.base_url, error.reason)) from None
        except (OSError, ssl.SSLError) as error:
            raise ArmError(operation, "cannot reach %s: %s" % (self.base_url, error)) from None
        try:
            document = json.loads(text) if text.strip() else {}
        except ValueError:
            raise ArmError(operation, "the answer is not JSON: %s" % text[:200]) from None
        return (document, headers, http_status) if with_headers else document


def _retry_after(headers):
    """Seconds to wait before polling again: ``Retry-After`` (whole seconds; ``headers`` has
    lower-case names), 1 to 10, else 1."""
    try:
        return min(10.0, max(1.0, float(headers.get("retry-after") or 1)))
    except ValueError:
        return 1.0


def machine_client(params, shown, ca_copy_exists):
    """The management API client for the machine the agent shows (``azcmagent show -j``): the
    module's control plane and credential options, else what the machine knows (its control
    plane URL, its tenant, the CA it kept at connect time when ``ca_copy_exists(CA_COPY)``)."""
    ca = params["control_plane_ca"]
    if not ca and shown.get("resourceId") and ca_copy_exists(CA_COPY):
        ca = CA_COPY
    return ArmClient(
        params["control_plane_url"] or shown.get("controlPlaneUrl"),
        ca_file=ca,
        tenant_id=params["tenant_id"] or shown.get("tenantId"),
        client_id=params["service_principal_id"],
        client_secret=params["service_principal_secret"],
        access_token=params["access_token"],
        certificate=params["service_principal_cert"],
    )


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
