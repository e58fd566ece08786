"""Stand-in for pip's ``get-pip.py`` bootstrap script, which ansible-test downloads from a host
outside the package index. It bootstraps pip from the standard library's bundled wheel
(:mod:`ensurepip`), then installs the requested packages from the package index with that pip,
which reads the machine's pip configuration as usual.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    ensurepip.bootstrap(upgrade=True)
    env = dict(os.environ)
    env.pop("PIP_CONFIG_FILE", None)  # ensurepip ignores pip's configuration; the real install must not
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    return subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env)


if __name__ == "__main__":
    sys.exit(main())
