# A scripted device for the MQTT tests. Runs unchanged under MicroPython (as
# the ESP32 would) and CPython, as a subprocess:
#     micropython device_script.py FIRMWARE_DIR CONFIG.json
# (a file: the unix port crashes with "FATAL: uncaught NLR" on any argv string
# of 256 characters or more). CONFIG: {"client_id", "host", "port", "tls": {paths} or null, "keepalive",
#        "ack_timeout_ms", "max_retries", "steps": [[name, args...], ...]}
# Every outcome is printed as one JSON line {"ev": kind, "t": ms since start, ...}
# for the test to read; the test talks back only through the broker.
import sys
import json
import time

import asyncio

sys.path.insert(0, sys.argv[1])
with open(sys.argv[2]) as _f:
    cfg = json.load(_f)

from motorguard.mqtt import MQTTClient  # noqa: E402

MP = sys.implementation.name == "micropython"

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
except AttributeError:

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


T0 = ticks_ms()


def ev(kind, **kw):
    kw["ev"] = kind
    kw["t"] = ticks_diff(ticks_ms(), T0)
    print(json.dumps(kw))


def text(b):
    return b.decode() if isinstance(b, (bytes, bytearray)) else b


def exc_info(e):
    return {"type": type(e).__name__, "args": [a if isinstance(a, (int, str)) else repr(a) for a in e.args]}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_ssl(t):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if MP:
        # What the firmware does on the ESP32: DER bytes in memory.
        ctx.load_cert_chain(read(t["cert_der"]), read(t["key_der"]))
        ctx.load_verify_locations(cadata=read(t["ca_der"]))
    else:
        ctx.load_cert_chain(t["cert_pem"], t["key_pem"])
        ctx.load_verify_locations(cafile=t["ca_pem"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def main():
    ctx = make_ssl(cfg["tls"]) if cfg.get("tls") else None
    c = MQTTClient(
        cfg.get("client_id", "dev"),
        cfg.get("host", "localhost"),
        cfg["port"],
        keepalive=cfg.get("keepalive", 0),
        ssl=ctx,
        ack_timeout_ms=cfg.get("ack_timeout_ms", 5000),
        max_retries=cfg.get("max_retries", 3),
    )
    rx = []
    pings = [0]
    c.set_callback(lambda topic, msg, retained: (rx.append(1), ev("rx", topic=text(topic), msg=text(msg), retained=retained)))
    c.set_puback_callback(lambda pid: ev("puback", pid=pid))
    ping = c.ping

    async def counting_ping():
        pings[0] += 1
        await ping()

    c.ping = counting_ping
    runner = [None, None]  # task, outcome

    async def run():
        t = ticks_ms()
        try:
            await c.run()
            runner[1] = {"exc": None}
        except Exception as e:  # noqa: BLE001
            runner[1] = {"exc": exc_info(e)}
        runner[1]["ms"] = ticks_diff(ticks_ms(), t)
        ev("run_end", **runner[1])

    for step in cfg["steps"]:
        name, args = step[0], step[1:]
        soft = name[0] == "?"  # "?step": report an error and carry on
        if soft:
            name = name[1:]
        try:
            if name == "will":
                c.set_last_will(args[0], args[1], retain=args[2], qos=args[3])
            elif name == "connect":
                t = ticks_ms()
                sp = await c.connect(clean_session=args[0] if args else True, timeout_ms=args[1] if len(args) > 1 else 10000)
                ev("connected", sp=sp, ms=ticks_diff(ticks_ms(), t))
            elif name == "sub":
                ev("suback", topic=args[0], rc=await c.subscribe(args[0], args[1]))
            elif name == "pub":
                pid = await c.publish(args[0], args[1], retain=args[3] if len(args) > 3 else False, qos=args[2])
                ev("pub", topic=args[0], pid=pid)
            elif name == "sndbuf":  # bytes: a small send buffer, so big writes stop short and drain
                import socket

                w = c._writer
                sock = w.s if hasattr(w, "s") else w.get_extra_info("socket")  # MicroPython, CPython
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUF", 7), args[0])  # 7: Linux
            elif name == "pub_many":  # topic, n, qos[, pad]: a burst, messages "0".."n-1" (+ ":" and pad x's)
                pad = ":" + "x" * args[3] if len(args) > 3 else ""
                for i in range(args[1]):
                    await c.publish(args[0], str(i) + pad, qos=args[2])
                ev("pub_many", n=args[1])
            elif name == "pub_loop":  # topic, n, interval_ms: a steady QoS 0 sender
                for i in range(args[1]):
                    await c.publish(args[0], str(i))
                    await asyncio.sleep(args[2] / 1000)
                ev("pub_loop", n=args[1])
            elif name == "start_run":
                runner[0] = asyncio.create_task(run())
                await asyncio.sleep(0)
            elif name == "ready":
                ev("ready", label=args[0] if args else "")
            elif name == "wait_rx":  # n, timeout_ms
                t = ticks_ms()
                while len(rx) < args[0] and ticks_diff(ticks_ms(), t) < args[1]:
                    await asyncio.sleep(0.01)
                ev("rx_count", n=len(rx))
            elif name == "wait_acks":  # timeout_ms
                t = ticks_ms()
                while c.inflight() and ticks_diff(ticks_ms(), t) < args[0]:
                    await asyncio.sleep(0.01)
                ev("acks", inflight=c.inflight())
            elif name == "wait_run":  # timeout_ms: until run() ends
                t = ticks_ms()
                while runner[1] is None and ticks_diff(ticks_ms(), t) < args[0]:
                    await asyncio.sleep(0.01)
                ev("run_state", ended=runner[1] is not None)
            elif name == "sleep":
                await asyncio.sleep(args[0] / 1000)
            elif name == "stats":
                ev("stats", pings=pings[0], inflight=c.inflight(), connected=c.isconnected())
            elif name == "disconnect":
                await c.disconnect()
                ev("disconnected")
            elif name == "close":
                c.close()
                ev("closed")
            else:
                raise ValueError("unknown step " + name)
        except Exception as e:  # noqa: BLE001
            d = exc_info(e)
            d["step"] = name
            if soft:
                d["soft"] = True
            ev("error", **d)
            if not soft:
                break
    if runner[0] is not None and runner[1] is None:
        c.close()
        t = ticks_ms()
        while runner[1] is None and ticks_diff(ticks_ms(), t) < 2000:
            await asyncio.sleep(0.01)
    ev("done", connected=c.isconnected())


asyncio.run(main())
