"""Strip server file paths from text that leaves the server (error reasons on a session).

A path says where the server keeps its data, which is none of a client's business; its
last component keeps the meaning ("no such file: …/00000003.enc"), so only that is kept.
"""

from __future__ import annotations

import re

__all__ = ["redact_paths"]

# An absolute POSIX path: "/" not inside a word, a URL ("http://h/p") or a fraction ("1/2"),
# then segments up to whitespace, a quote or a closing bracket.
_ABSOLUTE = re.compile(r"""(?<![\w.~:/\\-])/(?:[^\s'"`/<>()\[\]{},;]+/)*([^\s'"`/<>()\[\]{},;]+)""")


def redact_paths(text: str) -> str:
    """`text` with every absolute path shortened to "…/" and its last component."""
    return _ABSOLUTE.sub(lambda m: "…/" + m.group(1), text)
