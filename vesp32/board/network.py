# Simulated `network` module of the Virtual ESP32 (station and AP interfaces).
#
# The link itself is the harness's: wifi(up) in the harness decides whether the
# access point is reachable. A station that has been asked to connect is
# connected ~300 ms after connect() or after the AP comes back (the ESP32 driver
# keeps retrying, as MicroPython's default reconnect policy does), and a second
# connect() while it is at it raises, as the chip's does. An empty SSID never
# connects. The IP traffic is the host's real network; while Wi-Fi is down
# name resolution fails (see _vboard.install_socket_shim) and the harness can
# also cut the fault proxy.

import time

import _vboard as _B

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STAT_NO_AP_FOUND_IN_RSSI_THRESHOLD = 211
STAT_NO_AP_FOUND_IN_AUTHMODE_THRESHOLD = 212
STAT_NO_AP_FOUND_W_COMPATIBLE_SECURITY = 210

AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
AUTH_WPA2_ENTERPRISE = 5
AUTH_WPA3_PSK = 6
AUTH_WPA2_WPA3_PSK = 7

PHY_LAN8720 = 0

_JOIN_US = 300000
_hostname = ["mpy-esp32"]
_country = ["XX"]
# Per-interface state, shared by every WLAN object of that interface (as on the chip):
# [active, wants_connection, ssid, connect_ticks_us]
_state = {STA_IF: [False, False, "", 0], AP_IF: [False, False, "", 0]}


def _sta_active():
    return _state[STA_IF][0]


def hostname(name=None):
    if name is None:
        return _hostname[0]
    _hostname[0] = name


def country(code=None):
    if code is None:
        return _country[0]
    _country[0] = code


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __new__(cls, interface_id=STA_IF):
        # One static object per interface on the chip (ports/esp32/network_wlan.c), made below
        # with its interface and state: WLAN() only looks it up.
        w = _WLANS.get(interface_id)
        if w is None:
            raise ValueError("invalid WLAN interface identifier")
        return w

    def active(self, is_active=None):
        if is_active is None:
            return self._s[0]
        self._s[0] = bool(is_active)
        if not is_active:
            self._s[1] = False

    def connect(self, *args, bssid=None):
        # ssid and key are positional only on the chip (ports/esp32/network_wlan.c).
        if len(args) > 2:
            raise TypeError("function takes at most 2 positional arguments")
        if self._if != STA_IF:
            raise OSError("AP interface cannot connect")
        if not self._s[0]:
            raise OSError("Wifi Not Started")
        _B.poll()
        if self._s[1] and not self.isconnected():
            # The driver is connecting, or reassociating by itself after a loss: esp_wifi_connect()
            # refuses ("sta is connecting, return error"), which the port raises (micropython#17661).
            raise OSError("Wifi Internal Error")
        if args and args[0] is not None:
            self._s[2] = args[0]
        self._s[1] = True
        self._s[3] = time.ticks_us()

    def disconnect(self):
        # The driver stops reassociating; status() is STAT_IDLE again.
        self._s[1] = False

    def _since(self):
        # Microseconds since both the connect() and the AP being up.
        s = self._s
        ref = s[3]
        if time.ticks_diff(_B.wifi_since, ref) > 0:
            ref = _B.wifi_since
        return time.ticks_diff(time.ticks_us(), ref)

    def isconnected(self):
        _B.poll()
        s = self._s
        if self._if == AP_IF:
            return False
        return s[0] and s[1] and bool(s[2]) and _B.wifi_up and self._since() >= _JOIN_US

    def status(self, param=None):
        _B.poll()
        if param == "rssi":
            if not self.isconnected():
                raise OSError("not connected")
            return _B.rssi
        if param is not None:
            raise ValueError("unknown status param")
        s = self._s
        if not (s[0] and s[1]):
            return STAT_IDLE
        if not s[2] or not _B.wifi_up:
            return STAT_NO_AP_FOUND
        if self._since() < _JOIN_US:
            return STAT_CONNECTING
        return STAT_GOT_IP

    def config(self, *args, **kw):
        if kw:
            for k in kw:
                if k in ("ssid", "essid"):
                    self._s[2] = kw[k]
                elif k in ("hostname", "dhcp_hostname"):
                    _hostname[0] = kw[k]
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        k = args[0]
        if k == "mac":
            return _B.MAC
        if k in ("ssid", "essid"):
            return self._s[2]
        if k in ("hostname", "dhcp_hostname"):
            return _hostname[0]
        if k == "channel":
            return 6
        if k == "txpower":
            return 20
        if k == "reconnects":
            return -1
        if k == "pm":
            return WLAN.PM_PERFORMANCE
        raise ValueError("unknown config param")

    def ifconfig(self, cfg=None):
        if cfg is not None:
            return None
        if self.isconnected():
            return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def ipconfig(self, key):
        if key == "addr4":
            c = self.ifconfig()
            return (c[0], c[1])
        if key == "dhcp4":
            return True
        raise ValueError("unknown ipconfig param")

    def scan(self):
        _B.poll()
        if not self._s[0]:
            raise OSError("Wifi Not Started")
        ssid = self._s[2] if _B.wifi_up and self._s[2] else ""
        if not ssid:
            return []
        return [(ssid.encode(), b"\x24\x0a\xc4\x11\x22\x33", 6, _B.rssi, AUTH_WPA2_PSK, False)]


_WLANS = {}
for _i in _state:
    _w = object.__new__(WLAN)
    _w._if = _i
    _w._s = _state[_i]
    _WLANS[_i] = _w
