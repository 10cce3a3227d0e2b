# Inert stand-in: the network code is imported for its size, never run (vesp32/heap32). It still
# offers the whole surface the firmware calls (contract/board.py; tests/vesp32/test_board_surface.py).
STA_IF = 0


class WLAN:
    def __init__(self, interface):
        pass

    def active(self, on=None):
        return False

    def connect(self, ssid=None, key=None):
        pass

    def isconnected(self):
        return False

    def status(self, param=None):
        return 0
