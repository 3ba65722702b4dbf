"""The checks on a client's URLs: http(s) with a host, https off loopback, no credentials."""

from __future__ import annotations

import ipaddress

from yarl import URL

from ..errors import ConfigurationError

__all__ = ["check_url"]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(name: str, url: str, allow_insecure: bool) -> str:
    """``url`` when it is an http(s) URL with a host, https unless the host is a loopback one
    or ``allow_insecure``, and with no ``user:password@`` part; else ``ConfigurationError``
    naming the setting ``name``."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be an http(s) URL with a host") from None
    if parsed.user is not None or parsed.password is not None:
        # Not echoed: the URL holds a password. The API takes credentials as a token.
        raise ConfigurationError(
            f"{name} must not hold credentials (user:password@host); pass them as "
            "token=... or ClientCredentials(...)"
        )
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"{name} must be an http(s) URL with a host, got {url!r}")
    if parsed.scheme == "http" and not allow_insecure and not _is_loopback(parsed.host):
        raise ConfigurationError(
            f"{name} must use https (plain http is allowed for loopback hosts, or with "
            f"allow_insecure=True), got {url!r}"
        )
    return url
