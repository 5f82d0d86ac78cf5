"""The optional allow-list of the addresses that may call the callback.

Defence in depth for a leaked token: even a correctly signed request is refused
(403) unless it comes from an allowed address.  ``WECHAT_ALLOWED_IPS`` is a list
of addresses and networks, or ``wechat`` for the list WeChat publishes through
``cgi-bin/getcallbackip``: fetched at start-up (or taken from the store, where
the last good list is kept), and refreshed in the background once a day.  A
failed refresh keeps the list it had.

``WECHAT_TRUSTED_PROXIES`` says how many ``X-Forwarded-For`` hops to trust: 0
means the peer address itself is the caller.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Union

from .store import Store

log = logging.getLogger(__name__)

WECHAT = "wechat"
REFRESH_EVERY = 86400.0  # WeChat asks for the list to be fetched once a day
STORE_KEY = "allowlist:wechat"
STORE_TTL = 30 * 86400.0  # a stored list outlives a month of failed refreshes

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]  # noqa: UP007 - a runtime alias
Allowed = Union[tuple[Network, ...], str, None]  # noqa: UP007


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks as networks; ValueError naming the first that is neither."""
    found = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"has {entry!r}, which is neither an IP address nor a CIDR network") from None
    return tuple(found)


def parse_allowed(text: str) -> tuple[Network, ...] | str:
    """``WECHAT_ALLOWED_IPS``: ``wechat``, or a comma-separated list of addresses and networks."""
    if text.strip().lower() == WECHAT:
        return WECHAT
    found = networks(text.split(","))
    if not found:
        raise ValueError("lists no address")
    return found


def caller_address(peer: str | None, forwarded_for: str | None, trusted_proxies: int) -> str | None:
    """The address of whoever sent the request, trusting ``trusted_proxies`` hops of ``X-Forwarded-For``.

    Each trusted proxy appends the address it saw, so the caller is the ``trusted_proxies``-th
    entry from the right.  A request with fewer entries did not come through the proxies
    and has no address we can trust: None.
    """
    if trusted_proxies == 0:
        return peer
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    if len(hops) < trusted_proxies:
        return None
    return hops[-trusted_proxies]


def permits(allowed: Iterable[Network], address: str | None) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in allowed)


class AllowList:
    """A fixed list, from the setting."""

    def __init__(self, allowed: tuple[Network, ...]) -> None:
        self.allowed = allowed

    def permits(self, address: str | None) -> bool:
        return permits(self.allowed, address)


class WeChatAllowList(AllowList):
    """WeChat's published list, kept in the store and refreshed daily in the background.

    ``fetch`` asks WeChat for the list (``ip_list`` entries); it is the client's
    ``get_callback_ips``.  Start-up fails only when there is neither a fetched nor
    a stored list.
    """

    def __init__(self, fetch: Callable[[], list[str]], store: Store) -> None:
        self.fetch = fetch
        self.store = store
        self._refreshing = threading.Lock()
        stored = self._stored()
        if stored is not None and time.time() - stored[1] < REFRESH_EVERY:
            super().__init__(stored[0])
            self.fetched_at = stored[1]
            return
        try:
            self._fetch_and_keep()
        except Exception as exc:
            if stored is None:
                raise ValueError(f"cannot fetch WeChat's callback addresses and none are stored: {exc}") from None
            log.warning("cannot fetch WeChat's callback addresses (%s); using the stored list", exc)
            super().__init__(stored[0])
            self.fetched_at = stored[1]

    def permits(self, address: str | None) -> bool:
        if time.time() - self.fetched_at >= REFRESH_EVERY and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="allowlist-refresh", daemon=True).start()
        return permits(self.allowed, address)

    def _refresh(self) -> None:
        try:
            stored = self._stored()
            if stored is not None and time.time() - stored[1] < REFRESH_EVERY:  # another worker just did it
                self.allowed, self.fetched_at = stored
            else:
                self._fetch_and_keep()
        except Exception as exc:
            self.fetched_at = time.time() - REFRESH_EVERY + 600  # keep the old list, try again in 10 minutes
            log.warning("cannot refresh WeChat's callback addresses (%s); keeping the last list", exc)
        finally:
            self._refreshing.release()

    def _fetch_and_keep(self) -> None:
        entries = self.fetch()
        allowed = networks(entries)
        if not allowed:
            raise ValueError("WeChat answered an empty list")
        now = time.time()
        self.allowed, self.fetched_at = allowed, now
        try:
            self.store.set_value(STORE_KEY, json.dumps({"ip_list": list(entries), "fetched_at": now}), STORE_TTL)
        except Exception as exc:
            log.warning("cannot keep WeChat's callback addresses in the store: %s", exc)
        log.info("allow-list: %d of WeChat's callback addresses and networks", len(allowed))

    def _stored(self) -> tuple[tuple[Network, ...], float] | None:
        try:
            raw = self.store.get_value(STORE_KEY)
            if raw is None:
                return None
            data = json.loads(raw)
            return networks(data["ip_list"]), float(data["fetched_at"])
        except Exception as exc:
            log.warning("the stored list of WeChat's callback addresses cannot be read: %s", exc)
            return None
