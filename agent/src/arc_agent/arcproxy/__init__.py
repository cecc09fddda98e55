"""The Arc proxy (``arcproxy``): the local forward proxy of gateway mode (docs/gateway.md)."""
