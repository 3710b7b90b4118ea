"""``python -m cli``: the pack's command line (see :mod:`cli`)."""

import sys

from . import main

sys.exit(main())
