"""``values.Value``: what the Arc proxy's resident uses instead of frozen dataclasses."""

from __future__ import annotations

import pytest

from arc_agent.arcproxy.core import GatewaySettings, Refusal
from arc_agent.cpclient.proxy import Proxy, ProxyPolicy


def test_equal_values_are_equal_and_hash_alike() -> None:
    one = Proxy("proxy.test", 3128, "Basic x", "HTTPS_PROXY")
    assert one == Proxy("proxy.test", 3128, "Basic x", "HTTPS_PROXY")
    assert hash(one) == hash(Proxy("proxy.test", 3128, "Basic x", "HTTPS_PROXY"))
    assert one != Proxy("proxy.test", 3129, "Basic x", "HTTPS_PROXY")
    assert one != ProxyPolicy(one)  # another class, even with the same fields
    assert {one: 1}[Proxy("proxy.test", 3128, "Basic x", "HTTPS_PROXY")] == 1
    assert "Basic x" not in repr(ProxyPolicy(one))  # credentials never in a repr that may be logged
    assert repr(one) == "Proxy(authorization=<hidden>, host='proxy.test', port=3128, source='HTTPS_PROXY')"
    assert ProxyPolicy(one, ("ARM",)) == ProxyPolicy(
        Proxy("proxy.test", 3128, "Basic x", "HTTPS_PROXY"), ("ARM",)
    )


def test_a_value_names_its_fields_and_cannot_be_changed() -> None:
    refusal = Refusal(403, "no")
    assert repr(refusal) == "Refusal(reason='no', status=403)"
    with pytest.raises(AttributeError, match=r"Refusal\.status cannot be changed"):
        refusal.status = 200
    with pytest.raises(AttributeError):
        del refusal.reason
    gateway = GatewaySettings("/id", "gw", "https://gw.test:8444")
    assert (gateway.host, gateway.port, gateway.bypass) == ("gw.test", 8444, ())
