"""Cloud broadcast units: commands over MQTT, their storage and routes."""
