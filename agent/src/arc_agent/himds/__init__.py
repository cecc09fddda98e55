"""The ``himds`` service: the agent's local REST API on loopback port 40342 (reference §2)."""
