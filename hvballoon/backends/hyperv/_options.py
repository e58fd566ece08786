"""The query parameters of a ``hyperv://`` URI; importable without pywinrm.

>>> HyperVParameters.parse({"transport": "Kerberos"}, backend="hyperv", scheme="hyperv").transport
'kerberos'
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from hvballoon.backend_kit import URIParameters

__all__ = ["HyperVParameters"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class HyperVParameters(URIParameters):
    """``?transport=ntlm|kerberos|credssp|basic`` (any case; NTLM by default) and
    ``&scheme=https|http`` (HTTPS on 5986 by default; HTTP on 5985 only when asked)."""

    transport: Annotated[Literal["ntlm", "kerberos", "credssp", "basic"], BeforeValidator(_lower)] = "ntlm"
    scheme: Annotated[Literal["https", "http"], BeforeValidator(_lower)] = "https"
