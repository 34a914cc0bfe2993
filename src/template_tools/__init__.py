"""The template's own tooling (``repro new``): part of the template repository, never of a project.

Generated projects do not get this package (``copier.yml``'s ``_exclude``); the kit's ``repro``
command offers ``repro new`` only where it is importable.
"""
