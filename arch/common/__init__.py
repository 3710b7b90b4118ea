"""Building blocks shared by every architecture family (no ComfyUI imports)."""
