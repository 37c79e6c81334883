"""Request and response schemas, one module per resource."""

__all__: list[str] = []
