"""Connection URIs: parse, validate and redact.

hvballoon URIs look like ``scheme://[user@]host[:port][/path][?k=v&…]``. Libvirt URIs
(``qemu:///system``, ``qemu+ssh://user@host/system``, ``test:///default``) are passed to libvirt
verbatim. A password is never part of a URI: pass ``password=`` or set ``HVBALLOON_PASSWORD``.
A query parameter is given once, with a value (``?datacenter=`` or ``?seed=1&seed=2`` is an
:class:`~hvballoon.errors.InvalidURIError` naming it), whatever the scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from hvballoon.errors import Hint, InvalidURIError

__all__ = ["ParsedURI", "parse_uri", "redact_uri", "uri_secrets"]

_SECRET_KEYS = {"password", "passwd", "pass", "secret", "token", "pwd"}
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*$")


@dataclass(frozen=True)
class ParsedURI:
    """A parsed connection URI. ``raw`` is what the user gave; ``redacted`` is safe to print."""

    raw: str
    scheme: str
    username: str | None
    host: str | None
    port: int | None
    path: str
    query: dict[str, str] = field(default_factory=dict)

    @property
    def base_scheme(self) -> str:
        """``qemu+ssh`` → ``qemu``."""
        return self.scheme.split("+", 1)[0]

    @property
    def redacted(self) -> str:
        return redact_uri(self.raw)

    def __repr__(self) -> str:
        return f"ParsedURI({self.redacted!r})"


_PORT_RANGE = "the port must be a number from 1 to 65535"


def parse_uri(uri: object) -> ParsedURI:
    """Parse and validate a connection URI; errors never echo a password.

    >>> p = parse_uri("vcenter://admin@vc.example.com:8443/?datacenter=DC1")
    >>> p.scheme, p.username, p.host, p.port, p.query
    ('vcenter', 'admin', 'vc.example.com', 8443, {'datacenter': 'DC1'})
    """
    if not isinstance(uri, str):
        raise InvalidURIError(f"a connection URI must be a non-empty string, got {type(uri).__name__}")
    if not uri.strip():
        raise InvalidURIError(
            "a connection URI must be a non-empty string, got an empty one; e.g. qemu:///system, fake://seed"
        )
    if any(ord(c) < 32 or c == "\x7f" for c in uri):
        raise InvalidURIError("a connection URI cannot contain control characters")
    if "://" not in uri:
        raise InvalidURIError(
            f"not a URI: {redact_uri(uri)!r}; expected scheme://…, e.g. qemu:///system, "
            "esxi://user@host, hyperv://user@host, fake://seed"
        )
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # an unclosed "[" of an IPv6 address
        raise InvalidURIError(f"invalid URI {redact_uri(uri)!r}: {exc}") from None
    if _password_cut_short(parts):
        raise InvalidURIError(
            f"invalid URI {redact_uri(uri)!r}: a password must not be part of the URI, and a '#', "
            "'/' or '?' in it ends the host part early (in a URI's user part they would have to be "
            "percent-encoded: %23, %2F, %3F)",
            hint=Hint("password"),
        )
    try:
        port = parts.port
    except ValueError as exc:
        # urllib quotes what it could not read as a port, which may be part of a password
        reason = str(exc) if "'" not in str(exc) else "the port is not a number"
        if "out of range" in reason:
            reason = _PORT_RANGE
        raise InvalidURIError(f"invalid URI {redact_uri(uri)!r}: {reason}") from None
    if port == 0:
        raise InvalidURIError(f"invalid URI {redact_uri(uri)!r}: {_PORT_RANGE}")
    if parts.hostname and any(c.isspace() for c in parts.hostname):
        # not a name a resolver would take: refused here, not tried as a (retryable) connection
        raise InvalidURIError(
            f"invalid URI {redact_uri(uri)!r}: the host {parts.hostname!r} holds a blank "
            "(a host is a name or an address)"
        )
    scheme = parts.scheme.lower()
    if not _SCHEME_RE.match(scheme):
        raise InvalidURIError(f"invalid URI scheme in {redact_uri(uri)!r}")
    if parts.password is not None:
        raise InvalidURIError(
            f"a password must not be part of the URI ({redact_uri(uri)})", hint=Hint("password")
        )
    if parts.fragment:
        raise InvalidURIError(f"a URI fragment ('#…') is not allowed: {redact_uri(uri)!r}")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise InvalidURIError(f"invalid query string in {redact_uri(uri)!r}") from exc
    query: dict[str, str] = {}
    for k, v in pairs:
        if k in query:
            raise InvalidURIError(f"query parameter {k!r} given twice in {redact_uri(uri)!r}")
        if k.lower() in _SECRET_KEYS:
            raise InvalidURIError(
                f"a secret must not be part of the URI (parameter {k!r})", hint=Hint("password")
            )
        if not k.strip():
            raise InvalidURIError(f"a query parameter without a name in {redact_uri(uri)!r}")
        if not v.strip():
            # "?datacenter=" would be taken as no datacenter at all, or as one named ""
            raise InvalidURIError(
                f"query parameter {k!r} has no value in {redact_uri(uri)!r}: give it one, or leave it out",
                details={"parameter": k},
            )
        query[k] = v
    return ParsedURI(
        raw=uri,
        scheme=scheme,
        username=parts.username or None,
        host=parts.hostname or None,
        port=port,
        path=parts.path,
        query=query,
    )


def _password_cut_short(parts: SplitResult) -> bool:
    """Whether ``user:pa#ss@host`` (a ``#``, ``/`` or ``?`` in a password) was cut at that
    character: a host part holding a ``:`` but no ``@``, and an ``@`` after it where none belongs —
    anywhere, if what follows the ``:`` is no port; else in the path, the fragment or a query's
    first name (``?user=a@b`` stays a query)."""
    if "@" in parts.netloc or ":" not in parts.netloc:
        return False
    try:
        _ = parts.port
    except ValueError:
        return "@" in f"{parts.path}{parts.query}{parts.fragment}"
    first_name = parts.query.partition("&")[0].partition("=")[0]
    return "@" in parts.path or "@" in parts.fragment or "@" in first_name


_QUERY_SECRET_RE = re.compile(r"(?P<k>[?&](?:" + "|".join(sorted(_SECRET_KEYS)) + r"))=[^&#]*", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """The URI with any password or secret query value replaced by ``***``.

    >>> redact_uri("esxi://root:hunter2@h1?password=x&a=1")
    'esxi://root:***@h1?password=***&a=1'
    """
    # Deliberately loose: whatever sits between the scheme (if any) and the last "@" is user
    # information, and everything after its first ":" is a password — even in a URI too broken
    # to parse (an empty scheme, a "/" or "?" inside the password). Over-redacting is harmless.
    head, sep, rest = uri.partition("://")
    if not sep:
        head, rest = "", uri
    at = rest.rfind("@")
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            uri = f"{head}{sep}{user}:***@{rest[at + 1 :]}"
    return _QUERY_SECRET_RE.sub(lambda mm: f"{mm.group('k')}=***", uri)


def uri_secrets(uri: str) -> list[str]:
    """The secrets written in ``uri`` — what :func:`redact_uri` hides — as written and
    percent-decoded, for a caller that must mask them elsewhere (an Ansible module's echo of
    its arguments).

    >>> uri_secrets("esxi://root:hunter%32@h1?token=abc&a=1")
    ['hunter%32', 'hunter2', 'abc']
    """
    found: list[str] = []
    _, sep, rest = uri.partition("://")
    if not sep:
        rest = uri
    at = rest.rfind("@")
    if at != -1:
        _, colon, password = rest[:at].partition(":")
        if colon:
            found.append(password)
    for m in _QUERY_SECRET_VALUE_RE.finditer(uri):
        found.append(m.group("v"))
    out: list[str] = []
    for value in found:
        for form in (value, unquote(value)):
            if form and form not in out:
                out.append(form)
    return out


_QUERY_SECRET_VALUE_RE = re.compile(
    r"[?&](?:" + "|".join(sorted(_SECRET_KEYS)) + r")=(?P<v>[^&#]*)", re.IGNORECASE
)
