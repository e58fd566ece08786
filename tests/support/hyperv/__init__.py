"""The Hyper-V tests' peer: the loopback WinRM server answering from a fake Hyper-V host.

:mod:`.fakehost` models the host (Get-VM, Set-VMMemory and their refusals) over the simulator's
world; :mod:`.scenarios` holds the hostile names and sweeps; :mod:`.peer` starts a server with a
host behind it and opens sessions on it.
"""
