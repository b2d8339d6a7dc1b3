"""Which webhook URLs the service may call: the guard against server-side request forgery.

A webhook URL is the one place where a caller of the API chooses a host the service connects to.
Left open, an admin key (or anyone who steals one) could make the service probe its own network:
the loopback interface, private ranges, link-local and the cloud metadata endpoint
(169.254.169.254, fd00:ec2::254), which hands out credentials. So a target is allowed only when
EVERY address its host resolves to is globally routable, or is in the operator's allow-list
(`serving.webhook_allow_hosts`: host names, addresses or CIDR blocks).

The check runs at registration (a 422 naming `url`) and again right before each delivery, because
DNS can change between the two: `pin` resolves the host, checks each address and returns the URL
rewritten to the checked address (with the original `Host` header and TLS server name), so the
connection goes to the address that was checked and not to whatever a second look-up returns.
It sends nothing itself and owns no retry policy (serving.delivery).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",  # AWS ECS task credentials
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud
))


class TargetRefused(ValueError):
    """The URL's host is, or resolves to, an address the service must not call."""


@dataclass(frozen=True)
class AllowList:
    """Hosts (exact names) and networks the operator lets webhooks reach despite the rules."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        nets: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip()
            try:
                nets.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            except ValueError:
                hosts.add(text.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(nets))

    def allows(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


def why_forbidden(address: IPAddress) -> str | None:
    """Why the service must not connect to `address` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return why_forbidden(address.ipv4_mapped)
    checks = (
        (address in METADATA_ADDRESSES, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a globally routable address"),
    )
    return next((why for bad, why in checks if bad), None)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror is an OSError
        raise TargetRefused(f"host {host!r} does not resolve ({exc})") from None
    out: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    if not out:
        raise TargetRefused(f"host {host!r} resolves to no address")
    return out


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to tell the server."""

    url: str
    """The URL with its host replaced by the checked address."""
    host_header: str
    sni_hostname: str | None

    @property
    def extensions(self) -> dict[str, Any]:
        """httpx request extensions: the TLS server name (and certificate check) of the host."""
        return {"sni_hostname": self.sni_hostname} if self.sni_hostname else {}


def check(url: str, allow: AllowList) -> list[IPAddress]:
    """The addresses of `url`'s host, all checked; TargetRefused naming the first bad one."""
    try:
        parsed = httpx.URL(url)
        host, port = parsed.host, parsed.port  # both decode (IDNA), so both may fail
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise TargetRefused(f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise TargetRefused("must be an http:// or https:// URL with a host")
    host = host.lower().rstrip(".")
    port = port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise TargetRefused(f"port {port} is not a TCP port")
    addresses = resolve(host, port)
    if host in allow.hosts:
        return addresses
    for address in addresses:
        why = why_forbidden(address)
        if why is not None and not allow.allows(address):
            shown = f"{address} is" if str(address) == host.strip("[]") \
                else f"host {host!r} resolves to {address},"
            raise TargetRefused(f"{shown} {why}: webhooks may only call public hosts "
                                "(or those in serving.webhook_allow_hosts)")
    return addresses


def pin(url: str, allow: AllowList) -> Target:
    """Check `url` now and return it bound to the first checked address."""
    addresses: Sequence[IPAddress] = check(url, allow)
    parsed = httpx.URL(url)
    address = addresses[0]
    host_header = parsed.netloc.decode("ascii")
    sni = parsed.host if parsed.scheme == "https" and _is_name(parsed.host) else None
    return Target(url=str(parsed.copy_with(host=str(address))), host_header=host_header,
                  sni_hostname=sni)


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False
