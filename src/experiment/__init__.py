"""The example experiment: procedurally generated shapes, a small CNN, a plain training loop.

A generated project renames this package. It uses only the public API of
``repro``, exactly as a user's project would.
"""
