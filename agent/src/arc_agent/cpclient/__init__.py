"""The agent's client of the control plane (docs/agent-protocol.md)."""
