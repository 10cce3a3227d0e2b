# Maintenance mode (firmware/main.py runs this while the file "maintenance" exists): `make deploy`
# is replacing the files. Nothing here arms the watchdog, the motor stays off (the servo line
# held low: no pulses) and nothing of motorguard/ is imported, since it may be half copied. The
# module returns, main.py ends, and the board waits at the REPL for the copy to go on.
import machine

try:  # the servo's pin from the config, else the default map's (a test holds 18 to it)
    import json

    with open("config.json") as f:
        servo = json.load(f)["pins"]["servo"]
except Exception:  # noqa: BLE001 - missing, half written or without pins
    servo = 18
machine.Pin(servo, machine.Pin.OUT, value=0)
print("MG MAINTENANCE motor=off watchdog=off: files are being replaced (make deploy ends this)")
