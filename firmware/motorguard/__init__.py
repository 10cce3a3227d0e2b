# The firmware's version: in telemetry heads, status and acks, and on the BOOT line.
VERSION = "0.1.0"
