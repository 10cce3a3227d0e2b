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
    # The integer table lookup agrees with the exact Beta model within 0.1 C over the plausible
    # range: what the ADC's usable window (min_uv..max_uv) leaves of the table, ~5 to ~103 C.
    checked = 0
    for c10 in range(-195, 1245, 7):
        uv = int(ntc.microvolts(c10 / 10))
        if not ntc.min_uv <= uv <= ntc.max_uv:
            assert ntc.decicelsius(uv) is None, c10  # outside the window: never a reading
            continue
        got = ntc.decicelsius(uv)
        assert got is not None and abs(got - c10) <= 1, (c10, got)
        checked += 1
    assert checked > 130  # 50 to 1,030 tenths in steps of 7


def test_ntc_window_covers_the_limits_with_room():
    # The hard limit (60 C) and everything a running motor sees must read as a temperature.
    assert ntc.decicelsius(int(ntc.microvolts(10.0))) == 100
    assert ntc.decicelsius(int(ntc.microvolts(95.0))) == 950


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


def test_faults_as_the_esp32_adc_reads_them():
    # An open or shorted sensor as the chip's ADC (11 dB) reports it: a grounded input reads the
    # converter's floor (~150 mV, not 0) and the rail saturates (~2.8 V, not 3.3 V). Each must still
    # be a sensor fault (None), not a temperature or a current.
    import _vadc

    def adc(uv):
        return _vadc.reading_uv(uv, _vadc.ATTN_11DB)

    assert 100000 <= adc(0) <= 200000 and adc(3300000) < 3300000  # the model is the chip's, not the pin's
    assert ntc.decicelsius(adc(0)) is None  # NTC shorted to ground
    assert ntc.decicelsius(adc(3300000)) is None  # NTC open: pulled to the supply
    assert cs.milliamps(adc(0)) is None  # sensor output open: the divider pulls it to ground
    assert cs.milliamps(adc(3333333)) is None  # shorted to the 5 V sensor supply (2/3 divider)
    # And a healthy reading still reads: 25 C and 1.7 A through the same converter.
    assert abs(ntc.decicelsius(adc(int(ntc.microvolts(25.0)))) - 250) <= 1
    assert abs(cs.milliamps(adc(int(cs.microvolts(1.7)))) - 1700) <= 10


def test_current_rails_are_implausible():
    assert cs.milliamps(0) is None
    assert cs.milliamps(3300000) is None
    assert cs.milliamps(int(cs.microvolts(-2.0))) is None
