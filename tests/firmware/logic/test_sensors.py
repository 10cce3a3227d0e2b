# Sensor conversions and plausibility (runs under CPython and MicroPython).
from motorguard import config
from motorguard.sensors import NTC, CurrentSensor

ntc = NTC(config.DEFAULTS["ntc"])
cs = CurrentSensor(config.DEFAULTS["current"])


def test_ntc_at_25c_is_half_supply():
    # 10k NTC equals the 10k fixed resistor at 25 C: the divider sits at half the supply.
    assert abs(ntc.microvolts(25.0) - 1650000) <= 1
    assert ntc.decicelsius(1650000) == 250


def test_ntc_table_matches_exact_curve():
    # The integer table lookup agrees with the exact Beta model within 0.1 C over the plausible range.
    for c10 in range(-195, 1245, 7):
        uv = int(ntc.microvolts(c10 / 10))
        got = ntc.decicelsius(uv)
        assert got is not None and abs(got - c10) <= 1, (c10, got)


def test_ntc_hotter_means_lower_voltage():
    assert ntc.microvolts(40.0) < ntc.microvolts(30.0)


def test_ntc_open_and_short_are_implausible():
    assert ntc.decicelsius(3300000) is None  # open NTC: node pulled to the supply
    assert ntc.decicelsius(3200000) is None
    assert ntc.decicelsius(0) is None  # shorted NTC
    assert ntc.decicelsius(50000) is None


def test_ntc_out_of_physical_range_is_implausible():
    assert ntc.decicelsius(int(ntc.microvolts(-30.0))) is None
    assert ntc.decicelsius(int(ntc.microvolts(130.0))) is None


def test_current_zero_and_slope():
    assert cs.milliamps(config.DEFAULTS["current"]["zero_uv"]) == 0
    assert abs(cs.milliamps(int(cs.microvolts(1.7))) - 1700) <= 1
    assert abs(cs.milliamps(int(cs.microvolts(-0.5))) + 500) <= 1


def test_current_rails_are_implausible():
    assert cs.milliamps(0) is None
    assert cs.milliamps(3300000) is None
    assert cs.milliamps(int(cs.microvolts(-2.0))) is None
