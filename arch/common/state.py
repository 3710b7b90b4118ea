"""State-dict helpers: saved non-learned buffers, sequence lengths, training metadata."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from torch import nn

# Buffers that the official/spandrel/traiNNer/neosr models save although they are derived from
# the training image size or the window geometry. We accept them in any shape and recompute
# whatever the input size needs.
DERIVED_BUFFER_PATTERN = re.compile(
    r"(^|\.)(attn_mask(_\d+)?|relative_position_index\w*|rpe_biases|relative_coords_table\w*)$"
)


def ignore_derived_buffers(model: nn.Module, pattern: re.Pattern = DERIVED_BUFFER_PATTERN) -> None:
    """Make ``model.load_state_dict`` (strict) silently drop saved derived buffers.

    Keys that ``model`` really has are left alone, so a module may still register a buffer of the
    same name if it wants to keep it.
    """
    own = set(model.state_dict().keys())

    def _drop(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            if key not in own and pattern.search(key):
                del state_dict[key]

    model._register_load_state_dict_pre_hook(_drop, with_module=True)


def seq_len(state_dict: Mapping[str, object], prefix: str) -> int:
    """Number of entries of an ``nn.Sequential``/``ModuleList`` saved under ``prefix.N.``."""
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    idx = [int(m.group(1)) for k in state_dict if (m := pat.match(k))]
    return max(idx) + 1 if idx else 0


def missing_keys(state_dict: Mapping[str, object], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if k not in state_dict]


def training_config(metadata: Mapping[str, str] | None) -> dict:
    """Constructor hyperparameters that traiNNer-redux stores as JSON in safetensors metadata.

    traiNNer-redux writes ``{"metadata": json.dumps(net.hyperparameters)}``; other tools may
    write the JSON under another single key. Returns ``{}`` when there is nothing usable.
    """
    if not metadata:
        return {}
    for key in ("metadata", "hyperparameters", "config"):
        raw = metadata.get(key)
        if raw:
            try:
                value = json.loads(raw)
            except (TypeError, ValueError):
                continue
            if isinstance(value, dict):
                return value
    return {}
