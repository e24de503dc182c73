"""infiller's editor-facing half: the LSP server, the model runtime, the daemon and the CLI."""

__version__ = "0.1.0"
