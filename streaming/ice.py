"""ICE for the server's peer connections: which addresses it advertises, and its STUN server.

aioice has no per-connection options for either, so these are the one place the server reaches
into it: `loopback_only` replaces its module-level host address lookup while a loopback server
runs, and the STUN server's name is looked up once at startup (aioice would look it up for every
peer connection, in the executor the sessions render in)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)


def loopback_address(host: str) -> str | None:
    """The address to advertise in ICE when `host` is a loopback address, else None."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:  # a host name
        return None


@contextmanager
def loopback_only(address: str = "127.0.0.1") -> Iterator[None]:
    """ICE gathers host candidates on `address` only, while in the block.

    A server bound to loopback serves this machine alone, so it should not advertise its other
    interfaces to viewers (their addresses would leak and ICE would try paths nobody can use)."""
    every_interface = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = every_interface


def rtc_configuration(host: str, stun_server: str) -> RTCConfiguration:
    """The peer connections' configuration: no STUN on a loopback server (asking an unreachable
    server would only delay each answer by aioice's gathering timeout), else `stun_server`
    ("host:port") at the address it has now. Blocks on the name lookup: call it once, at startup."""
    if loopback_address(host) or not stun_server:
        return RTCConfiguration(iceServers=[])
    name, _, port = stun_server.rpartition(":")
    try:
        address = socket.getaddrinfo(name, int(port), type=socket.SOCK_DGRAM)[0][4][0]
    except (OSError, ValueError) as e:
        log.warning("STUN server %r cannot be used (%s): viewers get host candidates only", stun_server, e)
        return RTCConfiguration(iceServers=[])
    return RTCConfiguration(iceServers=[RTCIceServer(f"stun:{address}:{port}")])
