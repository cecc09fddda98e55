"""How this machine's requests go out: its proxy settings (``azcmagent config``) and its
environment read into a :class:`~arc_agent.cpclient.proxy.ProxyPolicy` (docs/proxy.md,
docs/gateway.md). Kept apart from ``cpclient.machine`` so that the Arc proxy, which needs only
this, does not load the agent's client (docs/architecture.md, "Footprint")."""

from __future__ import annotations

import os
from collections.abc import Mapping

from arc_agent.config.settings import LocalConfig
from arc_agent.cpclient.proxy import ARC_PROXY_PORT, GATEWAY_SOURCE, Proxy, ProxyError, ProxyPolicy, policy
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.paths import AgentPaths


def proxy_policy(
    paths: AgentPaths, environ: Mapping[str, str] | None = None, *, upstream: bool = False
) -> ProxyPolicy:
    """How this machine's requests go out (docs/proxy.md, docs/gateway.md): with
    ``connection.type gateway``, everything through the Arc proxy (``http://localhost:40343``;
    bypass lists do not apply, as in the real agent); else ``proxy.url`` and ``proxy.bypass``
    from the local settings, else ``HTTPS_PROXY`` of the environment (``environ``, default this
    process's). ``upstream``: the enterprise proxy only (what the Arc proxy itself goes through).
    A proxy URL that cannot be used is AZCM0023, naming where it came from."""
    settings = LocalConfig.load(paths.local_config, ignore_invalid=("proxy.url", "proxy.bypass"))
    if not upstream and settings.get("connection.type") == "gateway":
        return ProxyPolicy(Proxy("localhost", ARC_PROXY_PORT, source=GATEWAY_SOURCE))
    bypass = settings.get("proxy.bypass")
    try:
        return policy(
            str(settings.get("proxy.url") or ""),
            [str(item) for item in bypass] if isinstance(bypass, list) and not upstream else [],
            os.environ if environ is None else environ,
        )
    except ProxyError as exc:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"{exc}; correct it or clear it") from None
