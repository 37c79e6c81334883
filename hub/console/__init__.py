"""The operator console: static files served by the hub (see hub.api.routes.console)."""

__all__: list[str] = []
