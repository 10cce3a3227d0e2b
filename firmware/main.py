# MotorGuard firmware entry point (runs at every boot of the ESP32).
# Everything lives in motorguard/; this file stays tiny so a broken module still
# leaves a readable traceback: start.main() boots (or goes to safe mode), app.run() runs.
#
# While `make deploy` replaces the files, a file named "maintenance" exists (flashing/deploy.py
# writes it, with this main.py and maintenance.py, and removes it at the end): the watchdog
# cannot be stopped and survives a soft reset, so a board running MotorGuard would reset two
# seconds into any copy. Then this boot runs maintenance.py instead (no watchdog, motor off) and
# the board waits at the REPL. Only a deploy that finished removes the file: an interrupted one
# leaves the board in maintenance, never running a mix of old and new files.
import os

try:
    os.stat("maintenance")
    maintenance = 1
except OSError:
    maintenance = 0
if maintenance:
    import maintenance  # noqa: F811
else:
    from motorguard import start

    board = start.main()
    start = None  # boot-only: start.main() dropped the module, this was its last reference
    from motorguard import app

    app.run(board)
