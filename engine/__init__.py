"""Pure-torch engine: image metrics and comparisons, tiling, precision and memory policy.

Nothing here imports ComfyUI; devices, dtypes, progress and interrupts come in as parameters.
"""
