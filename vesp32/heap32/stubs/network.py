# Inert stand-in: the network code is imported for its size, never run (vesp32/heap32).
STA_IF = 0


class WLAN:
    def __init__(self, interface):
        pass
