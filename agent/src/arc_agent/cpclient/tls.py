"""The TLS the agent speaks to its control plane (and to its Arc gateway): the server verified
against the control plane's CA (or the system's CAs), TLS 1.2 at least. Apart from
``cpclient.transport`` so that the Arc proxy uses it without loading the HTTP client."""

from __future__ import annotations

import ssl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def ssl_context(ca_file: str | Path | None, ca_pem: str = "") -> ssl.SSLContext:
    """Verify the server against ``ca_pem`` (PEM text) when given, else ``ca_file``, else the
    system's CAs; TLS 1.2 at least. OSError (ssl.SSLError) or ValueError when the CA is bad."""
    if ca_pem:
        context = ssl.create_default_context(cadata=ca_pem)
    else:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """:func:`ssl_context` for the CA file given at connect; a bad one is AZCM's invalid argument."""
    from arc_agent.errors import AzcmError, ErrorCode  # here: the Arc proxy's resident need not load it

    try:
        return ssl_context(ca_file)
    except (OSError, ValueError) as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"cannot load the control plane's CA certificate {ca_file}: {exc}; give a PEM file "
            "(arc-controlplane ca show prints it)",
        ) from None
