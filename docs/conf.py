"""Sphinx configuration of pyrogen's API reference (``make docs``; built with warnings as
errors by ``.ci/run``)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import pyrogen  # noqa: E402

project = "pyrogen"
author = "the pyrogen developers"
copyright = "2026, the pyrogen developers"
release = version = pyrogen.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

templates_path = ["_templates"]
exclude_patterns = ["_build"]

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
    # packages re-export their modules' classes; document each where it is defined
    "ignore-module-all": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
autoclass_content = "both"

# objects of other projects are linked when their inventories can be fetched; offline
# builds (CI here) leave them as plain text rather than failing
intersphinx_mapping = {}
nitpicky = False

html_theme = "alabaster"
html_theme_options = {
    "description": "Deep unsupervised learning as Pyro models, losses and evaluators",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
