"""MQTT devices: the broker client service (panic buttons, heartbeats) and its storage."""
