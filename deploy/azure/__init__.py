"""The Azure resources as az scripts, and the check of their commands (docs/deployment.md)."""
