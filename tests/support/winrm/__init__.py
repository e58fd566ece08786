"""A loopback WinRM (WS-Management) server that the unmodified pywinrm client talks to.

``server`` is the protocol (standard library only, plus pyspnego for NTLM); ``harness`` starts
and stops it for a test and makes its TLS certificate.
"""
