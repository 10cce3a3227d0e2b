"""Cloud fixtures: one moto server per session (real HTTP, every resource created), reset per test;
a local broker for the rules engine."""

from __future__ import annotations

import pytest

from cloud.local import moto_env


@pytest.fixture(scope="session")
def moto_server():
    server = moto_env.MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """An empty account with MotorGuard's resources, and boto3 pointed at it."""
    import requests

    requests.post(moto_server.url + "/moto-api/reset")
    moto_server.arns = moto_env.create_resources(moto_server.url)
    for var in ("HISTORY_TTL_DAYS", "DEADBAND_TEMP_C", "DEADBAND_CURRENT_A", "ALERT_WINDOW_S", "TELEGRAM_BOT_TOKEN",
                "TELEGRAM_CHAT_ID", "DISCORD_WEBHOOK_URL", "MOTORGUARD_LOCAL_BROKER_DIR"):
        monkeypatch.delenv(var, raising=False)
    moto_env.use_endpoint(moto_server.url)
    return moto_server


