"""A running loopback WinRM server with a fake Hyper-V host behind it, and sessions on it.

Used by the Hyper-V backend's tests, the hardening tests and matrix, and the benchmarks::

    from tests.support.hyperv.peer import start_peer

    for peer in start_peer("basic", https=False):
        with peer.connect() as hv:
            print(len(hv.list_vms()))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.require import require

__all__ = ["COMBOS", "COMBO_IDS", "PASSWORD", "USER", "Peer", "require_peer", "start_peer"]

USER = "admin"
PASSWORD = "s3cret-Pa55"
#: (transport, https): Basic over plain HTTP (fast) and NTLM over HTTPS (the realistic one).
COMBOS = [("basic", False), ("ntlm", True)]
COMBO_IDS = ["basic-http", "ntlm-https"]


def require_peer(transport: str = "ntlm", https: bool = True) -> None:
    """Skip locally, fail in CI, when the peer or the backend cannot run here."""
    from tests.support.winrm.harness import prerequisites

    reasons = prerequisites(transport=transport, https=https)
    try:
        import hvballoon.backends.hyperv.backend  # noqa: F401
    except ImportError as exc:
        reasons.append(f"the Hyper-V backend cannot load ({exc}): pip install -e '.[hyperv]'")
    require(not reasons, "; ".join(reasons))


@dataclass
class Peer:
    """A running WinRM peer and the fake host answering it."""

    server: Any
    host: Any
    transport: str
    https: bool

    def uri(self, user: str = USER, **query: str) -> str:
        params = {"transport": self.transport, **({} if self.https else {"scheme": "http"}), **query}
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        return f"hyperv://{user}@{self.server.host}:{self.server.port}/?{qs}"

    def connect(self, *, password: str = PASSWORD, **kw: Any) -> Any:
        import hvballoon
        from hvballoon.retry import RetryPolicy

        kw.setdefault("retry", RetryPolicy(max_attempts=1))
        if self.https:
            kw.setdefault("ca_file", self.server.ca_file)
        return hvballoon.connect(self.uri(), password=password, timeout=kw.pop("timeout", 10.0), **kw)


def start_peer(transport: str, https: bool, host: Any = None, **options: Any) -> Iterator[Peer]:
    """Yield one :class:`Peer` (a fresh fake host unless ``host`` is given); stop it after."""
    require_peer(transport, https)
    from tests.support.hyperv.fakehost import FakeHyperVHost
    from tests.support.winrm.harness import WinRMServer

    host = host or FakeHyperVHost()
    with WinRMServer(host, transport=transport, https=https, users={USER: PASSWORD}, **options) as server:
        yield Peer(server, host, transport, https)
