"""Users, sessions, API keys, roles and jurisdiction scope, audit log."""
