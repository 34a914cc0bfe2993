"""``python -m repro``: the same as the ``repro`` command."""

import sys

from repro.tools.cli import main

sys.exit(main())
