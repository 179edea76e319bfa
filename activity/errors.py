"""The one exception type a user should ever see from this package.

Library code raises :class:`ActivityError` with a message that names the file, folder or flag and
says what is wrong; each command line catches it and prints ``error: <message>`` with exit code 2,
so bad input never ends in a traceback from inside torch.
"""

from __future__ import annotations

import argparse
from typing import Callable


class ActivityError(Exception):
    """Bad input from the user: a file, folder, flag or checkpoint that cannot be used as given."""


def run_command(command: "Callable[[argparse.Namespace], int]", args: "argparse.Namespace") -> int:
    """Run a command line's body: an :class:`ActivityError` becomes ``error: <message>`` and exit 2."""
    import sys

    try:
        return command(args)
    except ActivityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
