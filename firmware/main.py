# MotorGuard firmware entry point (runs at every boot of the ESP32).
# Everything lives in motorguard/; this file stays tiny so a broken module still
# leaves a readable traceback and motorguard.app.main() handles safe mode.
import motorguard.app

motorguard.app.main()
