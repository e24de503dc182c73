"""The language server: `InfillerServer`, `build_server`, and the open-document store."""

from server.lsp.server import InfillerServer, build_server

__all__ = ["InfillerServer", "build_server"]
