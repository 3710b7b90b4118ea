"""What "Super Resolution Model Loader" shows about a loaded model, as plain text.

Pure: reads a spandrel ``ImageModelDescriptor`` and returns text, so the node
(:mod:`..nodes.load_model`) and the command line (``python -m cli info``) show the same thing.
"""

from __future__ import annotations


def _precisions(desc) -> str:
    names = ["fp32"] + (["bf16"] if desc.supports_bfloat16 else []) + (["fp16"] if desc.supports_half else [])
    return ", ".join(names)


def _size_rule(desc) -> str:
    req = desc.size_requirements
    parts = []
    if req.multiple_of > 1:
        parts.append(f"multiple of {req.multiple_of}")
    if req.minimum > 0:
        parts.append(f"at least {req.minimum} px")
    if req.square:
        parts.append("square")
    return ", ".join(parts) or "any"


def describe(desc, file_name: str) -> str:
    """What the node shows: architecture, variant, scale, parameters, precisions, inferred settings.

    Args:
        desc: the loaded descriptor (ours carry ``srt_info``; spandrel's do not).
        file_name: the checkpoint's name as the user picked it.
    """
    info = getattr(desc, "srt_info", None)
    if info is not None:
        head = info.summary()
        source = "SR Transformers implementation"
    else:
        params = sum(p.numel() for p in desc.model.parameters())
        tags = f" [{', '.join(desc.tags)}]" if desc.tags else ""
        head = f"{desc.architecture.name}{tags} x{desc.scale}, {params / 1e6:.2f} M params"
        source = "spandrel implementation"
        fallback = getattr(desc, "srt_fallback", None)
        if fallback:  # one of our families, in a config only spandrel's implementation builds
            head += f"\nspandrel's implementation: {fallback}"
    return "\n".join(
        [
            head,
            f"precisions: {_precisions(desc)}",
            f"channels: {desc.input_channels} -> {desc.output_channels}; input size: {_size_rule(desc)}",
            f"{file_name} ({source})",
        ]
    )
