# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# A real HTTPS server standing in for the control plane's token service and management API
# (machines GET and PATCH), with a throwaway CA made here: the management API client is tested
# over real TLS, not with a mock of urllib.

import contextlib
import datetime
import ipaddress
import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TENANT = "0f6c1e1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a"
CLIENT_ID = "9a8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
CLIENT_SECRET = "unit-test-client-secret"
ACCESS_TOKEN = "unit-test-access-token"
ISSUED_TOKEN = "token-issued-by-the-test-server"
MACHINE = (
    "/subscriptions/5d3b1a52-0f6c-4c1e-9a8e-0d1f2b3c4d5e/resourceGroups/arc-servers"
    "/providers/Microsoft.HybridCompute/machines/h1"
)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, issuer_key, ca, issuer_cert=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory, name="unit-test"):
    """A CA and a server certificate for localhost/127.0.0.1 signed by it: the paths of the CA
    PEM, the server certificate and the server key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(name + " CA", name + " CA", ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("localhost", name + " CA", server_key.public_key(), ca_key, False, ca_cert)
    paths = {}
    for label, data in (
        ("ca", ca_cert.public_bytes(serialization.Encoding.PEM)),
        ("cert", server_cert.public_bytes(serialization.Encoding.PEM)),
        (
            "key",
            server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
    ):
        path = directory / ("%s-%s.pem" % (name, label))
        path.write_bytes(data)
        paths[label] = str(path)
    return paths


class _ThreadingHTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True


class ControlPlaneStandIn:
    """State and record of the stand-in: machines by resource id, every request seen."""

    def __init__(self):
        self.machines = {}
        self.scripted = {}
        self.requests = []
        self.url = None
        self.ca = None

    def add_machine(self, resource_id=MACHINE, tags=None):
        self.machines[resource_id.lower()] = {
            "id": resource_id,
            "name": resource_id.rsplit("/", 1)[-1],
            "type": "Microsoft.HybridCompute/machines",
            "location": "westeurope",
            "tags": dict(tags or {}),
            "properties": {"status": "Connected", "vmId": "b7a098cc-b0b8-46e8-a205-62f301a62a8f"},
        }
        return self.machines[resource_id.lower()]

    def answer(self, method, path, status, body=None, headers=None):
        """Script the next answer to ``method path`` (after the token check): extensions and
        operations are answered from these, in order, each once."""
        self.scripted.setdefault((method, path.lower()), []).append((status, body, dict(headers or {})))
        return self


def _handler(plane):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status, document, headers=None):
            text = json.dumps(document).replace("{url}", plane.url) if document is not None else ""
            body = text.encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value.replace("{url}", plane.url))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            parsed = urllib.parse.urlsplit(self.path)
            plane.requests.append(
                {
                    "method": self.command,
                    "path": parsed.path,
                    "query": urllib.parse.parse_qs(parsed.query),
                    "headers": dict((k.lower(), v) for k, v in self.headers.items()),
                    "body": body,
                }
            )
            return parsed, body

        def do_POST(self):
            parsed, body = self._record()
            if parsed.path != "/%s/oauth2/v2.0/token" % TENANT:
                return self._answer(
                    400, {"error": "invalid_request", "error_description": "AADSTS90002: no tenant"}
                )
            form = urllib.parse.parse_qs(body)
            wanted = {
                "grant_type": ["client_credentials"],
                "client_id": [CLIENT_ID],
                "client_secret": [CLIENT_SECRET],
                "scope": ["https://management.azure.com/.default"],
            }
            if form != wanted:
                return self._answer(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x",
                    },
                )
            return self._answer(
                200, {"token_type": "Bearer", "expires_in": 3599, "access_token": ISSUED_TOKEN}
            )

        def _machine(self):
            parsed, body = self._record()
            if self.headers.get("Authorization") not in ("Bearer " + ISSUED_TOKEN, "Bearer " + ACCESS_TOKEN):
                self._answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
                return None, None, None
            queue = plane.scripted.get((self.command, parsed.path.lower()))
            if queue:
                status, document, headers = queue.pop(0)
                self._answer(status, document, headers)
                return None, None, None
            if urllib.parse.parse_qs(parsed.query).get("api-version") != ["2024-07-10"]:
                self._answer(400, {"error": {"code": "InvalidApiVersionParameter", "message": "api-version"}})
                return None, None, None
            machine = plane.machines.get(parsed.path.lower())
            if machine is None:
                self._answer(404, {"error": {"code": "ResourceNotFound", "message": "no such machine"}})
                return None, None, None
            return parsed, body, machine

        def do_GET(self):
            parsed, body, machine = self._machine()
            if machine is not None:
                self._answer(200, machine)

        def do_PUT(self):
            self._machine()  # scripted answers only

        def do_DELETE(self):
            self._machine()  # scripted answers only

        def do_PATCH(self):
            parsed, body, machine = self._machine()
            if machine is None:
                return
            if self.headers.get("Content-Type") != "application/json":
                return self._answer(415, {"error": {"code": "UnsupportedMediaType", "message": "json only"}})
            document = json.loads(body)
            if set(document) != {"tags"}:
                return self._answer(400, {"error": {"code": "InvalidRequestContent", "message": "tags only"}})
            machine["tags"] = document["tags"]
            self._answer(200, machine)

    return Handler


@contextlib.contextmanager
def serve(tmp_path):
    """A running HTTPS stand-in for the control plane; its ``url`` and ``ca`` (CA PEM path)."""
    pki = make_pki(tmp_path)
    plane = ControlPlaneStandIn()
    server = _ThreadingHTTPServer(("127.0.0.1", 0), _handler(plane))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    plane.url = "https://localhost:%d" % server.server_address[1]
    plane.ca = pki["ca"]
    plane.pki_dir = tmp_path
    try:
        yield plane
    finally:
        server.shutdown()
        server.server_close()
