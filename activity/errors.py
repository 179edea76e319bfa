"""The one exception type a user should ever see from this package.

Library code raises :class:`ActivityError` with a message that names the file, folder or flag and
says what is wrong; each command line catches it and prints ``error: <message>`` with exit code 2,
so bad input never ends in a traceback from inside torch.
"""

from __future__ import annotations


class ActivityError(Exception):
    """Bad input from the user: a file, folder, flag or checkpoint that cannot be used as given."""
