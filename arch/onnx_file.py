"""An exported program as an ONNX file: translation, constant folding, names, metadata, checks.

Used by :mod:`.export`; imports the optional ONNX packages (``requirements-export.txt``) only
inside its functions. The graph is translated with PyTorch's exporter (``torch.onnx.export(...,
dynamo=True)``) and then only folded (constants, unused nodes, common subexpressions):
onnxscript's full pattern-rewrite pass costs minutes on these graphs and onnxruntime and TensorRT
fuse the same patterns when they load the file. The file is written to a temporary name in the
target folder and renamed after ``onnx.checker`` accepted it, so it is complete or absent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator

import torch

INPUT_NAME, OUTPUT_NAME = "input", "output"


# Their warnings are advice about the model's code (or the exporter's own), printed through
# logging's last-resort handler; an export's failures are raised with the model's name instead.
CHATTY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._export")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Python warnings and the exporters' logger warnings off inside, as they were after."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


class ConversionFailed(RuntimeError):
    """The ONNX exporter could not translate the program (the cause is ``__cause__``)."""


def _translate(program: torch.export.ExportedProgram, opset: int | None):
    """``torch.onnx``'s ONNXProgram of ``program`` (unoptimised)."""
    kwargs = {} if opset is None else {"opset_version": int(opset)}
    try:
        return torch.onnx.export(
            program,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            optimize=False,
            verbose=False,
            report=False,
            **kwargs,
        )
    except Exception as e:
        raise ConversionFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e


def _fold(model) -> None:
    """Constants folded, unused nodes removed, repeated subexpressions merged (in place)."""
    import onnx_ir.passes.common as passes
    import onnxscript.optimizer as optimizer

    optimizer.fold_constants(model)
    optimizer.remove_unused_nodes(model)
    passes.CommonSubexpressionEliminationPass()(model)
    optimizer.remove_unused_nodes(model)


def _name_dims(model, dynamic: bool, scale: int) -> None:
    """Symbolic sizes named ``height``/``width`` (output: ``height*<scale>``...) instead of the
    tracer's symbols, so runtimes and readers of the file see what they are."""
    if not dynamic:
        return
    import onnx_ir as ir

    for value, suffix in ((model.graph.inputs[0], ""), (model.graph.outputs[0], f"*{scale}")):
        dims = list(value.shape)
        dims[2], dims[3] = f"height{suffix}", f"width{suffix}"
        value.shape = ir.Shape(dims)


def write(
    program: torch.export.ExportedProgram,
    path: str | os.PathLike,
    metadata: dict[str, str],
    *,
    opset: int | None,
    dynamic: bool,
    scale: int,
) -> None:
    """Translate ``program``, fold it, name its sizes, add ``metadata`` and write ``path``."""
    import onnx

    onnx_program = _translate(program, opset)
    model = onnx_program.model
    _fold(model)
    _name_dims(model, dynamic, scale)
    model.metadata_props.update(metadata)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        onnx_program.save(temporary)
        onnx.checker.check_model(temporary, full_check=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata properties of an ONNX file (its weights are not read)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def compare_with_torch(
    path: str | os.PathLike, module: torch.nn.Module, sizes: list[tuple[int, int]], dtype: torch.dtype
) -> float:
    """Largest difference between onnxruntime's output (CPU) and ``module``'s on seeded random
    ``(1, C, h, w)`` inputs of each size in ``dtype`` (fp32 or fp16; numpy has no bf16), relative to
    the output's largest magnitude where that is over 1 (inf where the graph cannot run a size)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the graph's own warnings are not the user's
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    channels = session.get_inputs()[0].shape[1]
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(1, channels, h, w, generator=generator).to(dtype)
        with torch.no_grad():
            expected = module(x).float().numpy()
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0].astype(np.float32)
        except Exception:  # onnxruntime raises its own types; a graph that cannot run this size
            return float("inf")
        if got.shape != expected.shape:
            return float("inf")
        scale = max(1.0, float(np.abs(expected).max()))
        worst = max(worst, float(np.abs(got - expected).max()) / scale)
    return worst
