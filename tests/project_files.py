"""The repository's ``pyproject.toml``, parsed, for the tests that check what it declares.

``requires-python`` allows 3.10, whose standard library has no ``tomllib`` (3.11+): there the
``tomli`` backport (the same parser, ``requirements-dev.txt`` installs it on 3.10 only) reads it.
Tests read the file through :func:`pyproject` only, never through ``tomllib`` directly.
"""

from __future__ import annotations

import os

try:
    import tomllib as toml_parser
except ModuleNotFoundError:  # Python 3.10
    import tomli as toml_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pyproject() -> dict:
    """``pyproject.toml`` of the checkout as a dict."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return toml_parser.load(fh)
