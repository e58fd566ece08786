"""Tests of the real peers themselves (the harnesses live in :mod:`tests.support`)."""
