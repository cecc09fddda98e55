"""What the agent learns about its machine: system information and the cloud it runs in."""
