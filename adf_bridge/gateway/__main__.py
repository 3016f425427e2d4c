"""`python -m adf_bridge.gateway` (`./run gateway`): serve the gateway with uvicorn, configured by the
`MNIST_GATEWAY_*` variables."""

from __future__ import annotations

import logging

import uvicorn

from adf_bridge.gateway.app import create_app, log
from adf_bridge.gateway.settings import GatewaySettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = GatewaySettings.from_env()
    log.info(
        "gateway on http://%s:%s/graphql -> %s (auth: %s, location: %s)",
        settings.host, settings.port, settings.upstream, settings.auth, settings.location,
    )  # fmt: skip
    # No proxy headers, no server header; uvicorn's access log shows method, path and status only.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, proxy_headers=False, server_header=False
    )


if __name__ == "__main__":
    main()
