# Virtual ESP32 ADC characteristics: what ADC.read_uv() returns for a voltage on the pin.
#
# The esp32 port's read_uv() is ESP-IDF's line-fitting calibration of the raw code, in whole
# millivolts (ports/esp32/adc.c; docs/esp32/quickref.rst). It is faithful only inside a band
# per attenuation (the quickref: 0 dB 100-950 mV, 2.5 dB 100-1250, 6 dB 150-1750, 11 dB
# 150-2450). Below the band the raw code is 0 and the reading stays at the band's floor: a
# grounded input reads ~150 mV at 11 dB, never 0. Above it the converter compresses and then
# saturates; the exact curve is chip-dependent, so this model takes half the slope above the
# band up to the input where the raw code saturates, and nothing above that. Firmware must
# treat readings outside the band as "not a measurement" (motorguard/config.py ADC_USABLE_UV).
#
# Plain integer arithmetic with no allocation (the firmware reads two ADCs every tick), and no
# imports: the firmware's logic tests (tests/firmware/fakehw) use the same model.

ATTN_0DB = 0
ATTN_2_5DB = 1
ATTN_6DB = 2
ATTN_11DB = 3

# Per attenuation: (floor mV, top of the faithful band mV, input mV where the raw code saturates).
BANDS = ((100, 950, 1100), (100, 1250, 1500), (150, 1750, 2200), (150, 2450, 3100))


def reading_mv(uv, atten):
    """The calibrated reading, in mV, for uv microvolts on the pin at this attenuation."""
    floor, top, sat = BANDS[atten]
    mv = (uv + 500) // 1000
    if mv <= floor:
        return floor
    if mv <= top:
        return mv
    if mv > sat:
        mv = sat
    return top + (mv - top) // 2


def reading_uv(uv, atten):
    """read_uv() as the port returns it: the reading in mV, times 1000."""
    return reading_mv(uv, atten) * 1000


def raw12(uv, atten):
    """The 12-bit raw code (read() at 12 bits) for uv microvolts: 0 at the floor, 4095 saturated."""
    floor, top, sat = BANDS[atten]
    most = top + (sat - top) // 2
    return (reading_mv(uv, atten) - floor) * 4095 // (most - floor)
