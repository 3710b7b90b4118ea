"""A throwaway ComfyUI node pack for the real-host checks: reports (and can force) what ComfyUI's
model management holds for an UPSCALE_MODEL. Loaded beside the pack by ``tests/host/check_host.py``;
never shipped (ComfyUI loads it from a separate folder)."""

import json
import os

import comfy.model_management as mm
import folder_paths


def _state(desc, image):
    loaded = [lm.model for lm in mm.current_loaded_models if lm.model is not None]
    patcher = getattr(desc, "patcher", None)
    first = next(iter(desc.model.parameters()))
    return {
        "has_patcher": patcher is not None,
        "patcher_class": type(patcher).__name__ if patcher is not None else None,
        "patcher_loaded": any(p is patcher for p in loaded),
        "loaded_same_class": sum(type(p.model) is type(desc.model) for p in loaded),
        "loaded_dtypes": sorted(
            str(next(iter(p.model.parameters())).dtype) for p in loaded if type(p.model) is type(desc.model)
        ),
        "fp32_device": str(first.device),
        "fp32_dtype": str(first.dtype),
        "image_dtype": str(image.dtype),
        "image_shape": list(image.shape),
    }


class SRTProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "upscale_model": ("UPSCALE_MODEL",),
                "image": ("IMAGE",),
                "action": (["report", "evict"],),
                "tag": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ()
    FUNCTION = "probe"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def probe(self, upscale_model, image, action, tag):
        record = {"tag": tag, "before": _state(upscale_model, image)}
        if action == "evict":  # what a diffusion model's load does when it needs the room
            mm.free_memory(1e30, mm.get_torch_device())
            record["after"] = _state(upscale_model, image)
        with open(os.path.join(folder_paths.get_output_directory(), "probe.jsonl"), "a") as fh:
            fh.write(json.dumps(record) + "\n")
        return {}


NODE_CLASS_MAPPINGS = {"SRTProbe": SRTProbe}
