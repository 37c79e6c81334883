"""Live view: WebRTC viewers over the hub's one pull per camera."""
