"""Phase 1, before the relaunch: the entry point, the pre-run check of the command line, the process pins.

Nothing here imports torch at module level (a test keeps it so): ``--help``, ``--cfg job`` and a refused
command line stay fast, and pins such as ``PYTHONHASHSEED`` can still be applied by re-executing.
"""
