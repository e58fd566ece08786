"""The ESXi backend's options and URI parameters; importable without pyvmomi.

>>> VCenterParameters.parse({"datacenter": "DC1"}, backend="esxi", scheme="vcenter").datacenter
'DC1'
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hvballoon.backend_kit import BackendOptions, URIParameters

__all__ = ["ESXiOptions", "ESXiParameters", "VCenterParameters"]


class ESXiOptions(BackendOptions):
    """What each option does: see :class:`~hvballoon.backends.esxi.backend.ESXiBackend`."""

    page_size: int = Field(1000, ge=1)
    perf_counters: bool = False
    fast_sweep: bool = True


class ESXiParameters(URIParameters):
    """``esxi://user@host[:port]/?scheme=https|http`` (plain HTTP: test simulators only)."""

    scheme: Literal["https", "http"] = "https"


class VCenterParameters(ESXiParameters):
    """``vcenter://user@host/?datacenter=DC&cluster=C`` (or ``&folder=F``): the inventory's root."""

    datacenter: str | None = None
    cluster: str | None = None
    folder: str | None = None

    @model_validator(mode="after")
    def _cluster_or_folder(self) -> VCenterParameters:
        if self.cluster is not None and self.folder is not None:
            raise ValueError("give either cluster= or folder= (the VMs of a cluster are not filed by folder)")
        return self
