"""What faces the network: Ray Serve deployments, the ASGI API, the WebSocket gateway."""
