"""Devices: the registry, health and KPIs, the stream patrol, their storage and routes."""
