"""Everything that speaks a device or peer protocol, one package per protocol."""

__all__: list[str] = []
