"""make demo, shortened: the whole system comes up, the devices run their scenarios, the overloaded
one raises an alert, nothing is rejected, and everything shuts down."""

import io
import re

from cloud.tools import demo


def test_demo_runs_unattended_and_summarizes():
    out = io.StringIO()
    summary = demo.run(duration=35, out=out)
    text = out.getvalue()
    assert "error" not in summary, text
    assert summary["devices"] == 3
    assert summary["messages_sent"] > 10 and summary["telemetry_batches_stored"] > 3
    assert summary["events_stored"] >= 5  # three BOOTs, STARTED, the FAULT...
    assert summary["alerts"] >= 1 and summary["rejected"] == 0 and summary["rule_errors"] == 0
    assert "FAULT on motor-002" in text and "summary:" in text and "shutting down" in text
    # The dashboard's one line: where it is and who signs in (the user make demo created).
    line = re.search(r"^dashboard: (http://127\.0\.0\.1:\d+/) \(user (\S+), password (\S+)\)$", text, re.M)
    assert line, text
    assert line.group(1) == summary["dashboard"] and line.group(2) == demo.DEMO_USER
