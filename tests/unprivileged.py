"""Run a check as a user whose file permissions hold (tests run as root here, where they would not)."""

from __future__ import annotations

import os
from collections.abc import Callable

NOBODY = 65534


def said_as_nobody(attempt: Callable[[], str], refused: type[BaseException]) -> str:
    """`"read: " + attempt()`, or `"refused: " + the error` of type `refused`, from a forked child.

    The child drops to `nobody` first when this process is root, so a file's permission bits
    apply to it as they would to a person.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                out = "read: " + attempt()
            except refused as e:
                out = "refused: " + str(e)
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said
