"""The "Compare" node: PSNR/SSIM of two image batches and a before/after slider over them.

A thin adapter: the work is :func:`..engine.comparison.compare`. Besides its outputs the node
sends the front end (``web/srt_compare.js``) these UI entries:

* ``a_images`` / ``b_images``: A and B after alignment, saved as temp previews -- the slider.
* ``images``: the same files, so ComfyUI shows plain previews wherever the slider cannot draw
  (the extension not loaded, another node renderer, the queue panel).
* ``text``: the report; ``srt_summary``: one line per measured pair, drawn over the slider.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..engine.comparison import MODES, Comparison, compare
from . import host_compat

METRIC_CHANNELS = {"y_channel": "y", "rgb": "rgb"}
SEARCH_ALIASES = [
    "compare",
    "image comparer",
    "before after",
    "slider",
    "PSNR",
    "SSIM",
    "metrics",
    "difference",
    "super resolution",
    "upscale",
]
PREVIEW_FRAMES = 32  # frames of a batch saved for the slider; metrics always cover every frame


def _save_previews(images, name: str) -> list[ui.SavedResult]:
    """Save up to PREVIEW_FRAMES frames to ComfyUI's temp folder for the front end."""
    return ui.ImageSaveHelper.save_images(
        images[:PREVIEW_FRAMES],
        filename_prefix=f"srt_compare_{name}",
        folder_type=io.FolderType.temp,
        cls=None,
        compress_level=1,
    )


def _slider_ui(result: Comparison, report: str) -> dict[str, list]:
    """The node's UI payload: slider images, plain-preview fallback, report and summary."""
    a_images = _save_previews(result.aligned.a, "a")
    b_images = _save_previews(result.aligned.b, "b")
    return {
        "a_images": a_images,
        "b_images": b_images,
        "images": a_images + b_images,
        "text": [report],
        "srt_summary": result.summary(),
    }


class CompareNode(io.ComfyNode):
    """Measure image_b (and image_a) against a reference and show A and B under a slider."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SRT_Compare",
            display_name="Compare Images (PSNR / SSIM)",
            category="image/upscaling",
            description=(
                "Compare two image batches (two models, two precisions, tiled vs untiled): PSNR and SSIM "
                "as SR papers report them, a comparison image, and a before/after slider on the node."
            ),
            is_output_node=True,
            inputs=[
                io.Image.Input("image_a", tooltip="First image batch (left of the slider), e.g. model A."),
                io.Image.Input("image_b", tooltip="Second image batch (right of the slider), e.g. model B."),
                io.Image.Input(
                    "reference",
                    optional=True,
                    tooltip="Ground truth. With it A and B are both measured against it; without it "
                    "B is measured against A. Sizes follow the reference (else image_a).",
                ),
                io.Combo.Input(
                    "mode",
                    options=list(MODES),
                    default="side_by_side",
                    tooltip="Comparison image: A | B (| reference) side by side, A left / B right split, "
                    "or an amplified heatmap of |B - reference| (|B - A| without a reference).",
                ),
                io.Combo.Input(
                    "metrics_on",
                    options=list(METRIC_CHANNELS),
                    default="y_channel",
                    tooltip="y_channel: BT.601 luma, as SR papers report; rgb: all three channels. "
                    "Both use 8-bit values; the report also gives the other one's means.",
                ),
                io.Int.Input(
                    "border_crop",
                    default=0,
                    min=0,
                    max=512,
                    tooltip="Pixels ignored on every side before measuring (papers crop the scale, e.g. 4 for x4).",
                ),
                io.Float.Input(
                    "difference_gain",
                    default=8.0,
                    min=1.0,
                    max=100.0,
                    step=0.5,
                    tooltip="How much the difference heatmap amplifies errors (mode 'difference').",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "comparison", display_name="comparison", tooltip="The comparison image, one per frame."
                ),
                io.Float.Output(
                    "psnr",
                    display_name="psnr",
                    tooltip="Mean PSNR (dB) of B vs reference, or of B vs A without one; inf if identical.",
                ),
                io.Float.Output(
                    "ssim",
                    display_name="ssim",
                    tooltip="Mean SSIM of B vs reference, or of B vs A without one.",
                ),
                io.String.Output(
                    "report",
                    display_name="report",
                    tooltip="Per-image and mean PSNR/SSIM of A and B vs the reference, and notes.",
                ),
            ],
            **host_compat.schema_extras(search_aliases=SEARCH_ALIASES),
        )

    @classmethod
    def execute(
        cls,
        image_a,
        image_b,
        mode: str,
        metrics_on: str,
        border_crop: int,
        difference_gain: float,
        reference=None,
    ) -> io.NodeOutput:
        result = compare(
            image_a,
            image_b,
            reference,
            mode=mode,
            channels=METRIC_CHANNELS.get(metrics_on, metrics_on),
            border=border_crop,
            gain=difference_gain,
        )
        report = result.report()
        return io.NodeOutput(result.image, result.psnr, result.ssim, report, ui=_slider_ui(result, report))
