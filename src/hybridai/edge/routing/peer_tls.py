"""TLS to site peers: mutual, and pinned to the device the cloud says lives at that URL.

A peer's URL comes from its own report, so it proves nothing: the caller pins, per peer, the
device id and the public keys the cloud recorded for that device of this site (desired
state's ``site_access``). An impostor at that address, a device of another site, or one whose
key the cloud does not know fails the handshake before the request is sent; this device's
own certificate goes with every call, so the peer admits it as a device of the same site.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from hybridai.edge.identity import DeviceIdentity
from hybridai.link.pinning import pinned_context
from hybridai.protocol.site_access import SiteAccess


class PeerNotTrusted(Exception):
    """No call is made: the cloud has not named this peer (or its keys) as of this site."""


class PeerTls:
    def __init__(self, identity: DeviceIdentity, access: Callable[[], SiteAccess | None]) -> None:
        self.identity = identity
        self.access = access
        self._contexts: dict[str, tuple[tuple[object, ...], ssl.SSLContext]] = {}

    def context(self, device_id: str) -> tuple[tuple[object, ...], ssl.SSLContext]:
        """``(pin, context)`` for ``device_id``; ``pin`` changes when the context must change.

        Rebuilt when the peer's recorded keys change or this device's certificate is renewed
        (the file's modification time), so calls present the current certificate.
        """
        access = self.access()
        keys = tuple(access.devices.get(device_id, ())) if access is not None else ()
        if not keys:
            raise PeerNotTrusted(
                f"the cloud has not named {device_id} (with its key) as a device of this site"
            )
        try:
            mtime = self.identity.cert_file.stat().st_mtime_ns
        except OSError:
            raise PeerNotTrusted("this device holds no certificate yet") from None
        pin: tuple[object, ...] = (keys, mtime)
        held = self._contexts.get(device_id)
        if held is not None and held[0] == pin:
            return held
        context = pinned_context(
            self.identity.ca_file,
            device_id,
            keys,
            self.identity.cert_file,
            self.identity.key_file,
        )
        self._contexts[device_id] = (pin, context)
        return pin, context
