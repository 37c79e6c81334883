"""GridWatch runtime: config, storage, writer, bus, HTTP API, CLI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
