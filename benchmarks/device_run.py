"""The device report's building blocks: tables, sections, the run's context, the writer (:mod:`.device_report`)."""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time

import torch

from .device_models import EXTRA_VARIANTS, Pair, load_pair


class Table:
    """Markdown table built row by row (rows survive a section that fails half way)."""

    def __init__(self, columns: list[str]):
        self.columns, self.rows = columns, []

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> list[str]:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        return lines + ["| " + " | ".join(r) + " |" for r in self.rows]


class Section:
    """A titled list of notes (paragraphs) and tables, in the order they were added."""

    def __init__(self, key: str, title: str):
        self.key, self.title, self.parts, self.status, self.seconds = key, title, [], "not run", 0.0

    def note(self, text: str) -> None:
        self.parts.append(text)

    def table(self, columns: list[str]) -> Table:
        t = Table(columns)
        self.parts.append(t)
        return t

    def render(self) -> list[str]:
        out = [f"## {self.title}", ""]
        for p in self.parts:
            out += (p.render() if isinstance(p, Table) else [p]) + [""]
        return out


class Context:
    """Settings of the run, the clock and budget, progress lines and the cache of loaded models."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.quick = args, args.quick
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.device.index is None:  # some CUDA calls want an explicit index
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.t0 = time.perf_counter()
        self._pairs: dict[str, Pair | Exception] = {}

    def light(self, variant: str) -> bool:
        """Measured lighter (see the module docstring): HAT, DAT, SwinIR unless ``--variants`` names them."""
        return variant in EXTRA_VARIANTS and not self.args.variants_named

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {msg}", file=sys.stderr, flush=True)

    def over_budget(self) -> bool:
        return self.elapsed() > self.args.budget_s

    def pair(self, name: str) -> Pair:
        """Ours and spandrel's descriptor of ``name`` (built once, kept on the CPU in fp32).

        A build that fails (either loader) raises its error here, and again for every later call
        without building again; sections record it as a cell (``build crash: ...``).
        """
        if name not in self._pairs:
            self.log(f"building {name}{' (quick: reduced config)' if self.quick else ''}")
            try:
                self._pairs[name] = p = load_pair(name, self.quick)
            except Exception as e:
                self._pairs[name] = e
                self.log(f"building {name} failed: {type(e).__name__}: {e}")
                raise
            self.log(f"built {name}: {p.params / 1e6:.2f} M parameters in {p.build_s:.1f}s")
        found = self._pairs[name]
        if isinstance(found, Exception):
            raise found
        return found

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> str:
        return f"{torch.cuda.max_memory_allocated(self.device) / 2**20:.0f}" if self.cuda else "-"

    def free(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def device_name(ctx: Context) -> str:
    return torch.cuda.get_device_name(ctx.device) if ctx.cuda else (platform.processor() or "cpu")


class Writer:
    """The report as it grows: each part goes to the file and to stdout at once, flushed, so a run
    killed half way leaves every part written so far on disk."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path, self.parts = path, []
        self.file = open(path, "w")

    def write(self, lines: list[str]) -> None:
        text = "\n".join(lines) + "\n"
        self.parts.append(text)
        self.file.write(text)
        self.file.flush()
        sys.stdout.write(text)
        sys.stdout.flush()

    def close(self) -> str:
        """Close the file; returns everything written."""
        self.file.close()
        return "".join(self.parts)
