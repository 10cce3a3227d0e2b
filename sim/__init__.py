"""MotorGuard's fleet load simulator: each simulated device a Locust user with its own mutually
authenticated MQTT session (docs/simulator.md)."""
