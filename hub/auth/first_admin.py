"""Handing the first admin's one-time password to the person who started the hub.

The password must reach that person and nobody else: never a log line, never a
file another user can read. On a terminal it is printed there. When standard
output is not a terminal (a service manager, ``docker logs``, ``> hub.log``), the
output is a log file in all but name, so the password goes into a file only the
hub's user can read (0600) in the data directory, and the output names that file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["FIRST_ADMIN_FILE", "hand_out_first_admin_password"]

#: The file, under the data directory, that holds the password when there is no terminal.
FIRST_ADMIN_FILE = "first-admin-password"


def hand_out_first_admin_password(
    password: str, data_dir: Path, *, out: TextIO | None = None
) -> Path | None:
    """Show `password` on the terminal, or write it to a 0600 file; return that file, if any."""
    out = out or sys.stdout
    if out.isatty():
        out.write(
            "GridWatch: first start, created user 'admin' with one-time password "
            f"{password} (change it at first login)\n"
        )
        out.flush()
        return None
    path = data_dir / FIRST_ADMIN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # O_EXCL with mode 0600: the file never exists with wider permissions, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    out.write(
        "GridWatch: first start, created user 'admin'; its one-time password is in "
        f"{path.resolve()} (readable by this user only; change the password at first login, "
        "then delete the file)\n"
    )
    out.flush()
    return path
