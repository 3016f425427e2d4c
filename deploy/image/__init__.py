"""The container image (Dockerfile, entrypoint, health check): docs/deployment.md."""
