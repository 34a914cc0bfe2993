"""``python -m repro``: the same as the ``repro`` command."""

import sys

from repro.cli import main

sys.exit(main())
