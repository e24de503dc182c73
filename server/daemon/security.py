"""Who may talk to the daemon: loopback by default; anything else needs a bearer token.

A completion daemon reads the workspace and runs a model: on a shared network an open port
would hand both to anyone. Binding to a non-loopback address therefore refuses to start without
a token, and the token is compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

TOKEN_ENV = "INFILLER_DAEMON_TOKEN"


class ConfigError(ValueError):
    """The daemon cannot start as asked; the message says how to fix it."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def resolve_token(host: str, token_env: str | None) -> str | None:
    """The token requests must carry, or None (loopback without one); raises ConfigError off-loopback."""
    name = token_env or TOKEN_ENV
    token = os.environ.get(name) or None
    if token_env and token is None:
        raise ConfigError(f"--token-env names ${token_env}, which is not set")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"binding to {host} exposes the model and your code to the network: set a token in "
            f"${TOKEN_ENV} (or name another variable with --token-env); clients send "
            "'Authorization: Bearer <token>'"
        )
    return token


def authorized(header: str | None, token: str | None) -> bool:
    """Does an Authorization header carry the token? Always true when no token is configured."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
