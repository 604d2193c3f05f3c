"""Loaded by every Python process started with this folder on PYTHONPATH (tests/test_offline.py): each attempt to
reach a host other than this machine is written to $RLHF_LAB_NET_LOG and refused, as a blocked network would."""
import os
import socket

_LOG = os.environ.get("RLHF_LAB_NET_LOG")
_LOCAL = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost"}
_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect


def _refuse(what):
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {what}\n")
    raise OSError(f"network blocked by tests/netguard: {what}")


def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    if host not in _LOCAL and not str(host).startswith("127."):
        _refuse(f"getaddrinfo {host}")
    return _getaddrinfo(host, *args, **kwargs)


def connect(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOCAL and not str(host).startswith("127."):
        _refuse(f"connect {address}")
    return _connect(self, address)


if _LOG:
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
