# Inert stand-in for the ports without sockets (the WebAssembly one): imported, never called.
def getaddrinfo(*args):
    raise OSError("no network in the heap measurement")
