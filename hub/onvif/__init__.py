"""ONVIF cameras: event channels, discovery, their config, storage and routes."""
