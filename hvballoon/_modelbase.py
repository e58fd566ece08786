"""What every hvballoon model shares: frozen pydantic models, and the bounds and words the
hypervisors impose on a configuration (:mod:`hvballoon.models` re-exports the public ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["MAX_INT32", "Frozen", "SharesLevel"]

#: The largest count or period a hypervisor takes as a whole number: libvirt's
#: ``virDomainSetMemoryStatsPeriod`` takes a C ``int`` and vSphere's ``SharesInfo.shares`` is an
#: ``xsd:int``, both 32 bits signed (2**31 - 1 seconds is 68 years).
MAX_INT32 = 2**31 - 1

#: ESXi's shares levels (vSphere SharesInfo.level).
SharesLevel = Literal["low", "normal", "high", "custom"]


class Frozen(BaseModel):
    """A model whose instances never change, and that refuses a field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)
