"""Names as vSphere holds them, and as the user wrote them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["entity_name"]

#: vSphere stores every managed entity's name escaped: "Any / (slash), \\ (backslash), character
#: used in this name element will be escaped. Similarly, any % (percent) character [...] will be
#: escaped, unless it is used to start an escape sequence. A slash is escaped as %2F or %2f. A
#: backslash is escaped as %5C or %5c, and a percent is escaped as %25." (vSphere API,
#: ManagedEntity.name). Only these three sequences are undone, in one left-to-right pass.
_NAME_ESCAPE = re.compile(r"%(2[fF]|5[cC]|25)")


def entity_name(props: Mapping[str, Any], default: str) -> str:
    """The ``name`` of ``props`` as the user wrote it (vSphere's escapes undone), else ``default``.

    >>> entity_name({"name": "web%2f01 50%25"}, "vm-1"), entity_name({}, "vm-1")
    ('web/01 50%', 'vm-1')
    """
    name = props.get("name")
    if name is None:
        return default
    return _NAME_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), str(name))
