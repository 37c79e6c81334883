"""Alarms: engine, operator actions, SLA, linkage, outbox dispatcher, drills; storage, routes."""
