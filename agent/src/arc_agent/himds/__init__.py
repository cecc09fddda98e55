"""The ``himds`` service: the agent's local REST API on loopback port 40342 (docs/reference/himds.md)."""
