"""The kit's Hydra sweeper for hyperparameter searches (``hydra/sweeper=search``)."""
