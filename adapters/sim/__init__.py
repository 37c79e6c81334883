"""Simulated field devices and a simulated district that speak the documented protocols."""

from adapters.sim.district import (
    DISTRICT_CODE,
    DISTRICT_NAME,
    BroadcastSite,
    District,
    DistrictSpec,
    School,
    build_district,
)
from adapters.sim.frames import SimCameraFleet, SimFault, SimScene, render_burst, render_frame
from adapters.sim.mqtt_devices import BroadcastUnitSim, PanicButtonSim, ReceivedCommand, SimDevice
from adapters.sim.streams import SIM_STREAM_HOST, sim_device_of, sim_stream_urls

__all__ = [
    "DISTRICT_CODE",
    "DISTRICT_NAME",
    "SIM_STREAM_HOST",
    "BroadcastSite",
    "BroadcastUnitSim",
    "District",
    "DistrictSpec",
    "PanicButtonSim",
    "ReceivedCommand",
    "School",
    "SimCameraFleet",
    "SimDevice",
    "SimFault",
    "SimScene",
    "build_district",
    "render_burst",
    "render_frame",
    "sim_device_of",
    "sim_stream_urls",
]
