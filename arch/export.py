"""A loaded model as an ONNX file for onnxruntime, TensorRT and chaiNNer (``python -m cli export``).

:func:`export_onnx` takes what :func:`~.loader.load_model` returns and writes one graph:

* **the model as our engine runs it**: the module converted to the precision as the engine's
  placement converts it (``module.to(dtype)``), so a half-precision graph carries the same
  float32 residual stream and fp16 scaling (:mod:`.common.stream`) our torch run does;
* **traced whole** by ``torch.export`` (the one-graph forward ``tests/test_graphs.py`` holds every
  family to), then translated by PyTorch's maintained exporter (``torch.onnx.export(...,
  dynamo=True)``, onnxscript), constants folded, checked with ``onnx.checker``;
* **a fixed tile shape** by default (what TensorRT builds best), or with ``dynamic=True`` height
  and width as symbolic sizes: multiples of the model's size multiple, in the range the model
  says one graph serves (:meth:`~.common.model.SRModel.export_size_range`);
* **described** in the file's metadata (:data:`METADATA_KEYS`): architecture, variant, scale,
  channels, value range, size multiple and range, precision, this pack's version.

Input ``input``: ``(1, C, H, W)`` RGB in [0, 1] in the export's dtype; output ``output``:
``(1, C, H * scale, W * scale)``, unclamped (clamp to [0, 1] as our engine does). Checkpoints we
hand to spandrel export where their code traces; otherwise an :class:`ExportError` names the
architecture. The ONNX packages are optional (``requirements-export.txt``): without them
:class:`MissingExportPackages` says what to install.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import time
from dataclasses import dataclass, field

import torch
from spandrel import ImageModelDescriptor
from torch import Tensor, nn

from .common.model import SideRange, SRModel
from .export_info import file_metadata, side_text

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_TILE = 512
BF16_MIN_OPSET = 22  # the first opset whose Conv (and others) accept bfloat16
# Largest onnxruntime-vs-torch difference a verification accepts, relative to the output's scale:
# fp32 rounding of a different op order is ~1e-6 of it; a graph that baked in a traced size is
# off by far more
VERIFY_BOUND = {torch.float32: 1e-3, torch.float16: 0.1}
EXPORT_PACKAGES = ("onnx", "onnxscript")  # what torch.onnx.export(dynamo=True) and our checks need
INSTALL_HINT = "pip install -r requirements-export.txt"


class ExportError(Exception):
    """The model did not export; the message names the model and the step that failed."""


class UnsupportedExport(ExportError):
    """The request cannot be exported: not an image-to-image model, a precision the model is not
    validated in, a dynamic range that leaves out the tile."""


class MissingExportPackages(UnsupportedExport):
    """The optional ONNX packages are not installed."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: str
    tile: tuple[int, int]  # the traced size (the only one of a fixed graph)
    dynamic: bool
    size_multiple: int
    height_range: SideRange  # of a dynamic graph; (h, h) when fixed
    width_range: SideRange
    precision: str
    metadata: dict[str, str] = field(default_factory=dict)
    verified: str = ""  # what onnxruntime was checked against torch on ("" when not checked)
    seconds: float = 0.0


def missing_packages() -> list[str]:
    """The ONNX packages an export needs that are not installed (found without importing them)."""
    return [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]


def architecture_name(desc) -> str:
    """The name an error gives the model: our variant, else spandrel's architecture name."""
    info = getattr(desc, "srt_info", None)
    if info is not None:
        return info.variant
    arch = getattr(desc, "architecture", None)
    return getattr(arch, "name", None) or type(getattr(desc, "model", desc)).__name__


class _Call(nn.Module):
    """The model called as its descriptor calls it (spandrel keeps custom calls in ``_call_fn``)."""

    def __init__(self, model: nn.Module, call) -> None:
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) if self.call is None else self.call(self.model, x)


def _size_multiple(desc) -> tuple[int, int]:
    """``(multiple, minimum)`` of the model's input sides."""
    if isinstance(desc.model, SRModel):
        return desc.model.preferred_tile_multiple(), 1
    req = getattr(desc, "size_requirements", None)
    multiple = max(1, int(getattr(req, "multiple_of", 1) or 1))
    return multiple, int(getattr(req, "minimum", 0) or 0)


def _size_ranges(desc, tile: int, multiple: int, minimum: int) -> tuple[SideRange, SideRange]:
    if isinstance(desc.model, SRModel):
        return desc.model.export_size_range(tile, tile)
    low = -(-max(minimum, multiple) // multiple) * multiple
    return (low, None), (low, None)


def _dims(multiple: int, heights: SideRange, widths: SideRange) -> dict[int, object]:
    """``torch.export`` dims for height and width: multiples of ``multiple`` within the ranges."""
    dims = {}
    for axis, name, (low, high) in ((2, "height", heights), (3, "width", widths)):
        kwargs = {"min": low // multiple}
        if high is not None:
            kwargs["max"] = high // multiple
        dim = torch.export.Dim(f"{name}_blocks" if multiple > 1 else name, **kwargs)
        dims[axis] = multiple * dim if multiple > 1 else dim
    return dims


def _check(desc, precision: str) -> torch.dtype:
    name = architecture_name(desc)
    if not isinstance(desc, ImageModelDescriptor):
        raise UnsupportedExport(
            f"{name}: not an image-to-image model ({type(desc).__name__}); export takes upscalers and "
            "restoration models with one image in and one out"
        )
    if precision not in PRECISIONS:
        raise UnsupportedExport(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    half = {"fp16": desc.supports_half, "bf16": desc.supports_bfloat16}.get(precision, True)
    if not half:
        raise UnsupportedExport(
            f"{name}: not validated in {precision} (its descriptor says it may overflow or crash): "
            "export fp32, or build the engine from an fp32 export"
        )
    missing = missing_packages()
    if missing:
        raise MissingExportPackages(f"ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")
    return PRECISIONS[precision]


def export_onnx(
    desc,
    path: str | os.PathLike,
    *,
    tile: int = DEFAULT_TILE,
    dynamic: bool = False,
    precision: str = "fp32",
    opset: int | None = None,
    verify: bool | None = None,
    size: tuple[int, int] | None = None,
) -> ExportResult:
    """Write ``desc``'s model to ``path`` as ONNX (see the module docstring).

    Args:
        desc: a descriptor from :func:`~.loader.load_model` (ours or spandrel's).
        path: the ``.onnx`` file (written to a temporary name beside it, then renamed).
        tile: side of the square tile the graph is traced at, rounded up to the model's size
            multiple: the fixed graph's only size, the dynamic graph's example size.
        dynamic: height and width as symbolic sizes (multiples of the size multiple).
        precision: ``fp32``, ``fp16`` or ``bf16``: the weights' and the input's dtype.
        opset: ONNX opset (default: the exporter's; bf16: :data:`BF16_MIN_OPSET`).
        verify: run the file in onnxruntime (when installed) against the torch model, removing it
            if they disagree: a fixed graph at its tile (a full forward of each: slow for big
            models), a dynamic one at two sizes of its range, the smallest first (cheap). Default:
            dynamic graphs only. bf16 is not checked (onnxruntime's CPU has no bf16 kernels).
        size: ``(height, width)`` of a fixed graph, taken as it is instead of ``tile`` (the
            model's own padding is then in the graph: what ``upscale --backend`` runs per tile).
    Raises:
        ExportError: the model cannot be exported as asked (the message says why).
        MissingExportPackages: onnx / onnxscript are not installed.
    """
    from . import onnx_file

    dtype = _check(desc, precision)
    if dtype == torch.bfloat16:
        if opset is not None and opset < BF16_MIN_OPSET:
            raise UnsupportedExport(
                f"bf16 needs ONNX opset {BF16_MIN_OPSET} or later (Conv takes bfloat16 from there), "
                f"not {opset}: leave --opset out"
            )
        opset = opset or BF16_MIN_OPSET
    start = time.perf_counter()
    multiple, minimum = _size_multiple(desc)
    side = -(-max(int(tile), minimum, 1) // multiple) * multiple
    heights, widths = _size_ranges(desc, side, multiple, minimum) if dynamic else ((side, side), (side, side))
    if size is not None and not dynamic:  # one exact (h, w): what a tile of our engine is
        heights, widths = (size[0], size[0]), (size[1], size[1])
    shape = (heights[0], widths[0]) if size is not None and not dynamic else (side, side)
    if not (_in_range(shape[0], heights) and _in_range(shape[1], widths)):
        raise UnsupportedExport(
            f"{architecture_name(desc)}: a dynamic graph traced at {side} px serves heights "
            f"{side_text(heights)} and widths {side_text(widths)}, which leave out {side}: pick a tile in that range"
        )
    model = copy.deepcopy(desc.model).eval().to(dtype)  # as the engine's placement converts it
    if isinstance(model, SRModel):
        model.prepare_export()
        _warm_up(model, int(desc.input_channels), dtype, shape)
    module = _Call(model, getattr(desc, "_call_fn", None))
    x = torch.rand(1, int(desc.input_channels), *shape, generator=torch.Generator().manual_seed(0))
    dynamic_shapes = ({**_dims(multiple, heights, widths)},) if dynamic else None
    metadata = file_metadata(desc, shape, dynamic, multiple, heights, widths, precision)
    with onnx_file.quiet():  # their advice is about the model's code; failures are raised below
        try:
            with torch.no_grad():
                program = torch.export.export(
                    module, (x.to(dtype),), dynamic_shapes=dynamic_shapes, strict=False
                )
        except Exception as e:
            raise ExportError(_failure(desc, "torch.export could not trace it", e)) from e
        try:
            onnx_file.write(program, path, metadata, opset=opset, dynamic=dynamic, scale=int(desc.scale))
        except onnx_file.ConversionFailed as e:
            cause = e.__cause__ or e
            raise ExportError(_failure(desc, "the ONNX exporter could not translate it", cause)) from e
    checked = _verify(desc, path, module, dtype, shape, dynamic, multiple, heights, widths, verify)
    return ExportResult(
        os.fspath(path),
        shape,
        dynamic,
        multiple,
        heights,
        widths,
        precision,
        metadata,
        checked,
        time.perf_counter() - start,
    )


def _check_sizes(shape, dynamic: bool, multiple: int, heights: SideRange, widths: SideRange):
    """Sizes a verification runs: the tile of a fixed graph; the smallest size of a dynamic one and
    one a few multiples taller and wider (odd multiples, not square), inside its range."""
    if not dynamic:
        return [shape]
    low_h, low_w = heights[0], widths[0]
    bigger = [low_h + multiple, low_w + 3 * multiple]
    for i, top in enumerate((heights[1], widths[1])):
        if top is not None:
            bigger[i] = min(bigger[i], top)
    return [(low_h, low_w), (bigger[0], bigger[1])]


def _verify(desc, path, module, dtype, shape, dynamic, multiple, heights, widths, verify) -> str:
    """Run the file in onnxruntime against the torch module (see :func:`export_onnx`'s ``verify``);
    an :class:`ExportError` where they disagree. Returns what was checked ("" when nothing)."""
    from . import onnx_file

    if verify is None:
        verify = dynamic
    if not verify or dtype == torch.bfloat16 or importlib.util.find_spec("onnxruntime") is None:
        return ""
    sizes = _check_sizes(shape, dynamic, multiple, heights, widths)
    diff = onnx_file.compare_with_torch(path, module, sizes, dtype)
    bound = VERIFY_BOUND[dtype]
    shown = ", ".join(f"{h}x{w}" for h, w in sizes)
    if not diff <= bound:
        os.remove(path)
        raise ExportError(
            f"{architecture_name(desc)}: the exported graph does not reproduce the model at {shown} "
            f"(onnxruntime vs torch: {diff:.3g} of the output's scale, over {bound:g}); nothing was written: "
            "export a fixed tile instead, and report it"
        )
    return f"onnxruntime vs torch at {shown}: max abs {diff:.2g} (of the output's scale, at least 1)"


def _warm_up(model: SRModel, channels: int, dtype: torch.dtype, shape: tuple[int, int]) -> None:
    """One eager call at the smallest size of the model's graph: the geometry that does not depend
    on the size (position biases, shift masks) is then in its cache, and the traced graph reads
    it as constants instead of computing it (a fraction of the ops; a small, fast call)."""
    (h, _), (w, _) = model.export_size_range(*shape)
    with torch.no_grad():
        model(torch.zeros(1, channels, h, w, dtype=dtype))


def _in_range(n: int, bounds: SideRange) -> bool:
    return bounds[0] <= n and (bounds[1] is None or n <= bounds[1])


def _failure(desc, what: str, e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    detail = lines[0][:300] if lines else type(e).__name__
    implementation = "our implementation" if isinstance(desc.model, SRModel) else "spandrel's implementation"
    return f"{architecture_name(desc)} ({implementation}) does not export to ONNX: {what} ({type(e).__name__}: {detail})"
