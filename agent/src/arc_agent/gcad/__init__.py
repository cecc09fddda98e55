"""gcad: the machine configuration service (docs/machine-configuration.md)."""
