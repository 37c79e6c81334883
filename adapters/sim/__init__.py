"""Simulated field devices that speak the documented protocols over real peers."""

from adapters.sim.mqtt_devices import BroadcastUnitSim, PanicButtonSim, ReceivedCommand, SimDevice

__all__ = ["BroadcastUnitSim", "PanicButtonSim", "ReceivedCommand", "SimDevice"]
