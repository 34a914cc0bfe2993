"""Phase 3, one run: the run object, its record, checkpoints, resume, the run-directory layout and lock."""
