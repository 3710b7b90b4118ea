"""SR Transformers for ComfyUI: RGT, DRCT, ATD, HAT, DAT and SwinIR upscalers.

ComfyUI entry point. Import-light: nothing heavy happens until ComfyUI asks for the nodes.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import SRTransformersExtension

    return SRTransformersExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
