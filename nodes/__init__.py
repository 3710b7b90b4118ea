"""ComfyUI nodes of the pack: the only code that imports comfy / comfy_api / folder_paths.

Node ids and input names are a contract with saved workflows: never rename them.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import paths, routes
from .compare import CompareNode
from .load_model import LoadModelNode
from .upscale import UpscaleTiledNode


class SRTransformersExtension(ComfyExtension):
    """Registers the three nodes, the ``weights/`` folder and the front end's route."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # called once at load by every supported host (0.3.64 never calls on_load), before the schemas
        paths.register()
        routes.register()  # GET /srt/model_info for the loader's info box
        return [LoadModelNode, UpscaleTiledNode, CompareNode]


__all__ = ["CompareNode", "LoadModelNode", "SRTransformersExtension", "UpscaleTiledNode"]
