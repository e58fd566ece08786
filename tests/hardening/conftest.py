"""Fixtures shared by the hardening tests."""

from __future__ import annotations

from tests.ansible.conftest import ansible  # noqa: F401  (the playbook set-up, reused)
