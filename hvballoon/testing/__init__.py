"""Testing helpers: the backend conformance suite and pytest fixtures for the fake.

``hvballoon.testing.conformance`` holds the mixin classes every backend's tests inherit
(``KindRuleTests`` runs the rule cases of a hypervisor kind, from ``hvballoon.testing.cases``);
``hvballoon.testing.plugin`` is a pytest plugin (loaded automatically once hvballoon is
installed) with fixtures that give each test a fresh fake world.
"""
