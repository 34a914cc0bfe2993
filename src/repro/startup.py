"""The process environment as it was when the kit was first imported.

Some variables (PYTHONHASHSEED, MKL_CBWR, ...) are read once when the process
or a library starts; what ``os.environ`` says later may not be what is in
effect. The report compares against this snapshot.
"""

from __future__ import annotations

import os

ENVIRON: dict[str, str] = dict(os.environ)
