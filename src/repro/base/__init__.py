"""The base layer: what every phase of a run may use (errors, files, secrets, the start-up
environment, the config schema, the run-directory layout). It imports nothing else of the kit."""
