"""Start of a worker process spawned by :mod:`.pool` (run with ``runpy.run_path``).

A spawned process starts with a fresh interpreter in which the pack is not importable (the
command line registers it as a package at run time), so the parent cannot hand it a function of
the pack directly. This file registers the pack the way ``python -m cli`` does and then calls
:func:`.pool.worker_main` with ``WORKER_ARGS``, which the parent passes as plain data.
"""

import importlib
import importlib.util
import os
import signal

# Ctrl+C reaches every process of the terminal: the parent decides and stops the workers (SIGTERM),
# so a worker never prints a KeyboardInterrupt traceback from the middle of an import
signal.signal(signal.SIGINT, signal.SIG_IGN)

_CLI = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_srt_cli_entry", os.path.join(_CLI, "__init__.py"))
_entry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_entry)
_entry.register_pack()
importlib.import_module(f"{_entry.PACK_ALIAS}.cli.signals").end_with_parent()
importlib.import_module(f"{_entry.PACK_ALIAS}.cli.pool").worker_main(*WORKER_ARGS)  # noqa: F821 (given by run_path)
