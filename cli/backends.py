"""``upscale --backend onnxruntime|openvino``: the model's exported graph in another CPU runtime,
under the same engine (tiling, blending, precision policy, NaN/inf and out-of-memory handling).

The engine calls a module on each tile; :class:`GraphModule` is that module for a runtime. For
each tile shape and dtype the engine asks for, it runs a fixed-shape export of the model
(:func:`..arch.export.export_onnx`, the tile's exact size: the model's own internal padding is in
the graph, so every tile is computed as PyTorch computes it), exported once and kept in a cache
folder (:func:`cache_folder`) under a name that traces it to the checkpoint's SHA-256, the shape,
the dtype and the pack's and torch's versions. Runs on the CPU only, in fp32 or fp16 (neither
runtime has bf16 kernels on the CPU here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TextIO

import numpy as np
import torch
from torch import Tensor, nn

from ..arch.export import ExportError, export_onnx
from ..arch.export_info import pack_version
from .errors import CliError

BACKENDS = ("torch", "onnxruntime", "openvino")  # choices.BACKENDS
CACHE_ENV = "SRT_ONNX_CACHE"
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16"}
INSTALL = {
    "onnxruntime": "pip install -r requirements-export.txt",
    "openvino": "pip install -r requirements-export.txt openvino",
}


def cache_folder() -> str:
    """Where exported graphs are kept: ``$SRT_ONNX_CACHE``, else ``~/.cache/comfyui-sr-transformers/onnx``."""
    folder = os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "comfyui-sr-transformers", "onnx"
    )
    os.makedirs(folder, exist_ok=True)
    return folder


def check_backend(backend: str) -> None:
    """The runtime and the exporter import (exit 2 with what to install, before the model loads)."""
    import importlib.util

    needed = ("onnx", "onnxscript", backend)
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"--backend {backend} needs {', '.join(missing)}", "not installed", INSTALL[backend])


def _session(backend: str, path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> y`` of the file in ``backend`` on the CPU."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(["output"], {"input": x})[0]
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(path, "CPU", config)
    output = compiled.output(0)
    return lambda x: compiled({"input": x})[output]


class GraphModule(nn.Module):
    """The engine's module for one model in ``backend``: a fixed-shape graph per tile shape and dtype.

    Args:
        desc: the model's descriptor (ours or spandrel's).
        backend: ``onnxruntime`` or ``openvino``.
        tag: what names the checkpoint in cache file names (its SHA-256).
        log: where the one line per export goes.
    """

    def __init__(self, desc, backend: str, tag: str, log: Callable[[str], None]) -> None:
        super().__init__()
        self.desc, self.backend, self.tag, self.log = desc, backend, tag, log
        self.runs: dict[tuple[int, int, torch.dtype], Callable[[np.ndarray], np.ndarray]] = {}

    # what the engine asks of the model: the torch model's own answers, so the plan is the same
    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        return self.desc.model.working_set_per_pixel(tile_h, tile_w)

    def preferred_tile_multiple(self) -> int:
        return self.desc.model.preferred_tile_multiple()

    def _run(self, h: int, w: int, dtype: torch.dtype) -> Callable[[np.ndarray], np.ndarray]:
        key = (h, w, dtype)
        if key not in self.runs:
            if dtype not in DTYPE_NAMES:
                raise RuntimeError(f"--backend {self.backend} runs fp32 or fp16 on the CPU, not {dtype}")
            name = DTYPE_NAMES[dtype]
            versions = f"srt{pack_version()}-torch{torch.__version__.split('+')[0]}"
            path = os.path.join(cache_folder(), f"{self.tag}-{h}x{w}-{name}-{versions}.onnx")
            if not os.path.exists(path):
                self.log(f"exporting the model for {self.backend} at {w}x{h} {name} (once: kept in {path})")
                try:
                    export_onnx(self.desc, path, tile=0, size=(h, w), precision=name)
                except ExportError as e:
                    raise RuntimeError(f"--backend {self.backend}: {e}") from e
            self.runs[key] = _session(self.backend, path, torch.get_num_threads())
        return self.runs[key]

    def forward(self, x: Tensor) -> Tensor:
        run = self._run(int(x.shape[-2]), int(x.shape[-1]), x.dtype)
        return torch.from_numpy(np.ascontiguousarray(run(x.detach().cpu().contiguous().numpy())))


def graph_descriptor(desc, backend: str, model_sha256: str, err: TextIO, quiet: bool):
    """A descriptor like ``desc`` whose module runs in ``backend`` (the weights stay in ``desc``;
    its custom call, if any, is in the exported graph)."""
    from spandrel import ImageModelDescriptor

    log = (lambda line: None) if quiet else (lambda line: print(f"note: {line}", file=err, flush=True))
    graph = ImageModelDescriptor(
        GraphModule(desc, backend, model_sha256[:16], log),
        {},
        architecture=desc.architecture,
        purpose=desc.purpose,
        tags=list(desc.tags),
        supports_half=desc.supports_half,
        supports_bfloat16=False,  # neither runtime has bf16 kernels on the CPU
        scale=desc.scale,
        input_channels=desc.input_channels,
        output_channels=desc.output_channels,
        size_requirements=desc.size_requirements,
    )
    info = getattr(desc, "srt_info", None)
    if info is not None:
        graph.srt_info = info
    return graph
