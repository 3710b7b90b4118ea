"""Command line over the pack's loader and engine, without ComfyUI.

Run it from the repository root::

    python -m cli upscale photo.png -o photo_x4.png
    python -m cli info weights/SRT_ATD-tiny_x4.safetensors
    python -m cli compare a.png b.png --reference original.png

Inside the pack this folder is the subpackage ``<pack>.cli`` and imports ``..engine`` and
``..arch`` relatively, like the rest of the pack (ComfyUI itself never imports it). ``python -m
cli`` loads this file as a top-level package ``cli`` instead, where those relative imports cannot
work: :func:`main` then registers the checkout as the package ``srt`` (a module object whose
``__path__`` is the repository root: :func:`register_pack`, which the tests, benchmarks and
training call too) and runs ``srt.cli`` -- the same files, imported as part of the pack. Nothing
is added to ``sys.path``.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

PACK_ALIAS = "srt"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def register_pack() -> types.ModuleType:
    """Make the checkout importable as :data:`PACK_ALIAS` (idempotent) and return that package.

    The one place the alias is made: tests (``tests/model_helpers.py``), benchmarks and training
    call this function. It needs nothing but the standard library, so it can be loaded by path
    before the pack is importable.
    """
    if PACK_ALIAS not in sys.modules:
        pack = types.ModuleType(PACK_ALIAS)
        pack.__path__ = [REPO]
        pack.__file__ = os.path.join(REPO, "__init__.py")
        sys.modules[PACK_ALIAS] = pack
    return sys.modules[PACK_ALIAS]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    SIGTERM and SIGHUP stop it like Ctrl+C (:mod:`.signals`), also while it starts (importing
    torch takes seconds): one line, exit 128 + the signal's number, never a traceback.
    """
    if "." not in __name__:  # loaded as the top-level ``cli`` (python -m cli)
        register_pack()
        package = f"{PACK_ALIAS}.cli"
    else:
        package = __name__
    signals = importlib.import_module(f"{package}.signals")
    signals.install()
    try:
        app = importlib.import_module(f"{package}.app")
    except KeyboardInterrupt as e:
        print("error: interrupted while starting", file=sys.stderr)
        return signals.exit_code(e)
    return app.main(argv)


__all__ = ["main"]
