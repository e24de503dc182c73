"""LSP features, one module per group; each exposes `register(server: InfillerServer) -> None`."""
