"""``python plot_pianoroll.py --track Track01950``: predicted versus true activity of one test song.

The course's command; the program is :mod:`activity.pianoroll` (also installed as ``activity-plot``).
"""

import sys

from activity.pianoroll import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
