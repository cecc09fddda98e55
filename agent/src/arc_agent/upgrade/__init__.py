"""Agent upgrades on the host (docs/agent-upgrade.md): versions side by side under
``/opt/azcmagent/versions``, one link (``current``) switched in one rename, health checks after
the switch, and the version it came from back in place when they fail or when the upgrade was cut
short (``recover.sh``, run by systemd)."""
