"""Report section: the exported ONNX graph in onnxruntime-CUDA and TensorRT (:mod:`.device_report`).

Runs only where the packages import on the device: the exporter's (``onnx``, ``onnxscript``) and
at least one runtime (onnxruntime with its CUDA or TensorRT provider, or ``tensorrt``); otherwise
the section says which were absent and ends ``ok``. Every measurement is guarded (a crash is a
cell), so it never fails the report. Per variant: our export (``arch.export_onnx``, fixed tile,
fp32 and fp16), then per runtime the first call (for TensorRT: the engine build), milliseconds per
tile (best of a few after it) and the difference to our torch model on the device (fp32: max abs;
fp16: PSNR against our fp32 output).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
import time

import torch

from .common import psnr
from .device_models import import_pack, on_device, photo

VARIANTS = {"full": ["SwinIR_M_x4"], "quick": ["SwinIR_M_x4"]}  # an export of a full model takes minutes
TILE = {"full": 256, "quick": 32}
REPEATS = 5
PRECISIONS = ("fp32", "fp16")


def _version(module: str) -> str | None:
    """``module.__version__`` if it imports (None otherwise: absent or broken on this device)."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except Exception:  # a package that is there but cannot load (a CUDA mismatch) counts as absent
        return None


def runtimes(ctx) -> tuple[dict[str, str], list[str]]:
    """The runtimes this device has (name -> version) and the lines saying what is absent."""
    found, absent = {}, []
    for package in ("onnx", "onnxscript"):
        if _version(package) is None:
            absent.append(f"`{package}` (needed to export: `pip install -r requirements-export.txt`)")
    ort_version = _version("onnxruntime")
    providers = []
    if ort_version is not None:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    for provider, name in (
        ("CUDAExecutionProvider", "onnxruntime-CUDA"),
        ("TensorrtExecutionProvider", "onnxruntime-TensorRT"),
    ):
        if provider in providers and ctx.cuda:
            found[name] = ort_version
        else:
            absent.append(
                f"{name} (onnxruntime {ort_version or 'absent'}; providers: {', '.join(providers) or '-'})"
            )
    trt_version = _version("tensorrt")
    if trt_version is not None and ctx.cuda:
        found["TensorRT"] = trt_version
    else:
        absent.append(f"TensorRT (`tensorrt` {'needs a CUDA device' if trt_version else 'absent'})")
    if any("needed to export" in line for line in absent):
        found = {}
    return found, absent


def onnx_runtimes(ctx, sec) -> None:
    """The section: exports, then each runtime against our torch model (see the module docstring)."""
    found, absent = runtimes(ctx)
    if absent:
        sec.note("Absent on this device: " + "; ".join(absent) + ".")
    if not found:
        sec.note(
            "_Not measured: no ONNX runtime for this device imported (the lines above say which were absent)._"
        )
        return
    mode = "quick" if ctx.quick else "full"
    tile = TILE[mode]
    sec.note(
        f"Our export (`arch.export_onnx`, fixed {tile}x{tile} tile, as `python -m cli export`), run on "
        f"{', '.join(f'{k} {v}' for k, v in found.items())}. First call: session creation or engine "
        f"build; ms: best of {REPEATS} after it. vs torch: fp32 max abs against our fp32 module; fp16 "
        "PSNR (dB) against our fp32 output."
    )
    t = sec.table(["variant", "precision", "runtime", "export s", "first call s", "ms per tile", "vs torch"])
    x = photo(tile, tile, 100, 150)
    with tempfile.TemporaryDirectory() as folder:
        for variant in VARIANTS[mode]:
            if ctx.over_budget():
                t.add(variant, "-", "-", "skipped: budget", "-", "-", "-")
                continue
            _variant(ctx, t, variant, x, tile, found, folder)


def _variant(ctx, t, variant: str, x: torch.Tensor, tile: int, found: dict, folder: str) -> None:
    from srt.arch.export import export_onnx

    import_pack()
    try:
        desc = ctx.pair(variant).ours
        with torch.inference_mode():
            reference = on_device(desc, ctx.device, torch.float32)(x.to(ctx.device)).float().cpu()
    except Exception as e:
        t.add(variant, "-", "-", f"crash: {type(e).__name__}", "-", "-", "-")
        return
    for precision in PRECISIONS:
        path = os.path.join(folder, f"{variant}-{precision}.onnx")
        start = time.perf_counter()
        try:
            export_onnx(desc, path, tile=tile, precision=precision)
        except Exception as e:
            t.add(variant, precision, "-", f"crash: {type(e).__name__}", "-", "-", "-")
            continue
        export_s = f"{time.perf_counter() - start:.0f}"
        for runtime in found:
            if ctx.over_budget():
                t.add(variant, precision, runtime, export_s, "skipped: budget", "-", "-")
                continue
            try:
                first, ms, out = _run(ctx, runtime, path, x, precision)
                diff = (
                    f"{(out - reference).abs().max().item():.1e}"
                    if precision == "fp32"
                    else f"{psnr(out, reference):.1f} dB"
                )
                t.add(variant, precision, runtime, export_s, f"{first:.1f}", f"{ms:.2f}", diff)
            except Exception as e:
                t.add(
                    variant,
                    precision,
                    runtime,
                    export_s,
                    f"crash: {type(e).__name__}: {str(e)[:80]}",
                    "-",
                    "-",
                )
            ctx.free()
        ctx.log(f"onnx {variant} {precision} done")


def _run(ctx, runtime: str, path: str, x: torch.Tensor, precision: str) -> tuple[float, float, torch.Tensor]:
    """(first call s, best ms per tile, float32 CPU output) of ``runtime`` on the file."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    if runtime == "TensorRT":
        call = _tensorrt_call(ctx, path, x.to(ctx.device, dtype))
    else:
        call = _ort_call(ctx, runtime, path, x.to(dtype))
    start = time.perf_counter()
    out = call()
    first = time.perf_counter() - start
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return first, 1000 * min(times), out.float().cpu()


def _ort_call(ctx, runtime: str, path: str, x: torch.Tensor):
    import onnxruntime as ort

    index = ctx.device.index or 0
    cuda = ("CUDAExecutionProvider", {"device_id": index})
    providers = [cuda]
    if runtime == "onnxruntime-TensorRT":
        fp16 = x.dtype == torch.float16
        providers = [("TensorrtExecutionProvider", {"device_id": index, "trt_fp16_enable": fp16}), cuda]
    session = ort.InferenceSession(path, providers=providers)
    feed = {"input": x.numpy()}
    return lambda: torch.from_numpy(session.run(["output"], feed)[0])


def _tensorrt_call(ctx, path: str, x: torch.Tensor):
    """A TensorRT engine built from the file (strongly typed: the file's precision, as
    ``trtexec --stronglyTyped``), called on device tensors; the build is in the first call."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    state = {}

    def build():
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(path):
            raise RuntimeError(str(parser.get_error(0)))
        engine = trt.Runtime(logger).deserialize_cuda_engine(
            builder.build_serialized_network(network, builder.create_builder_config())
        )
        state["context"] = engine.create_execution_context()
        state["engine"] = engine

    def call() -> torch.Tensor:
        if not state:
            build()
        context = state["context"]
        out_shape = tuple(context.get_tensor_shape("output"))
        out = torch.empty(out_shape, dtype=x.dtype, device=ctx.device)
        context.set_tensor_address("input", x.data_ptr())
        context.set_tensor_address("output", out.data_ptr())
        stream = torch.cuda.current_stream(ctx.device)
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out

    return call
