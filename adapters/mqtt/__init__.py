"""MQTT adapter: school panic buttons and cloud broadcast units (see `models` for the topics)."""
