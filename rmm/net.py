"""Where a request came from."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _is_trusted_proxy(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXY_NETWORKS)


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or the nearest untrusted hop of X-Forwarded-For when the request came
    through one of the TRUSTED_PROXIES (never believed from anyone else)."""
    remote = request.META.get("REMOTE_ADDR") or None
    if remote is None or not _is_trusted_proxy(remote):
        return remote
    forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(forwarded):
        if not _is_trusted_proxy(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote
    return remote


def request_is_from_trusted_proxy(request) -> bool:
    return _is_trusted_proxy(request.META.get("REMOTE_ADDR", ""))
