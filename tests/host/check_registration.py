"""Real-host check of what the pack registers (not collected by pytest; needs a host):

    SRT_HOST_HOME=~/.cache/srt-host      python tests/host/check_registration.py   # ComfyUI 0.3.64
    SRT_HOST_HOME=~/.cache/srt-host-new  python tests/host/check_registration.py   # ComfyUI 0.33

* search aliases on every node where the host's schema has them (0.33), none and no error on 0.3.64;
* ``weights/`` after a ``srt_weights`` folder the user made default in an extra_model_paths.yaml,
  whose checkpoints Super Resolution Model Loader lists;
* with no checkpoint anywhere (a copy of the pack without model files): Super Resolution Model Loader's tooltip and
  the queue-time error say where to put one and point to the README section.

Prints one line per check; exit code 1 if any failed.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile

from check_examples import REPO, STAND_IN, ch, check, results

SECTION = "Where to get checkpoints"  # of the README shipped in the pack, named by its path
ALIASES = {"SRT_LoadModel": "RGT", "SRT_UpscaleTiled": "upscale", "SRT_Compare": "PSNR"}


def load_error(h, model_name: str) -> str:
    """The validation message of queueing Super Resolution Model Loader with ``model_name``."""
    prompt = {
        "1": {"class_type": "SRT_LoadModel", "inputs": {"model_name": model_name}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    r = ch.run(h, prompt, timeout=60)
    errors = [e.get("details", "") for ne in (r.get("node_errors") or {}).values() for e in ne["errors"]]
    return " ".join(errors)


def with_user_default(tmp: str) -> None:
    mine = os.path.join(tmp, "my_sr")
    os.makedirs(mine)
    shutil.copy(STAND_IN, os.path.join(mine, "user_model.safetensors"))
    yaml = os.path.join(tmp, "extra_model_paths.yaml")
    with open(yaml, "w") as fh:
        fh.write(f"mine:\n  base_path: {tmp}\n  is_default: true\n  srt_weights: my_sr/\n")
    h = ch.start([REPO], workdir=os.path.join(tmp, "w"), extra_args=["--extra-model-paths-config", yaml])
    try:
        info = ch.nodes(h)
        errors = ch.import_errors(h)
        version = ch._http(h, "GET", "/system_stats")[1]["system"].get("comfyui_version")
        print(f"host: ComfyUI {version} at {ch.comfyui_dir()}")
        check(not errors, f"pack imports clean ({errors or 'no errors'})")
        has_field = version != "0.3.64"
        for node, word in ALIASES.items():
            aliases = info[node].get("search_aliases")
            ok = (word in (aliases or [])) if has_field else aliases is None
            check(ok, f"{node}: search_aliases {aliases}")
        options = info["SRT_LoadModel"]["input"]["required"]["model_name"][1]["options"]
        check("user_model.safetensors" in options, f"the user's srt_weights folder is listed: {options}")
        message = load_error(h, "nope.safetensors")
        order = [message.find(os.path.join(tmp, "my_sr")), message.find("custom_nodes")]
        check(
            -1 < order[0] < order[1],
            f"the user's default folder stays first, weights/ after it: {message[:300]}",
        )
    finally:
        ch.stop(h)


def without_checkpoints(tmp: str) -> None:
    h = ch.start([REPO], workdir=os.path.join(tmp, "w2"), link_mode="copy")
    try:
        pack = os.path.join(h.workdir, "custom_nodes", os.path.basename(REPO))
        shipped = glob.glob(os.path.join(pack, "weights", "*.safetensors"))
        for f in shipped:  # a user who deleted the defaults; the server re-lists on the next request
            os.remove(f)
        info = ch.nodes(h)
        spec = info["SRT_LoadModel"]["input"]["required"]["model_name"][1]
        check(spec["options"] == [], f"no checkpoint anywhere: empty list ({spec['options']})")
        tooltip = spec.get("tooltip", "")
        readme = os.path.join(pack, "README.md")
        check(
            tooltip.startswith("No checkpoint installed")
            and SECTION in tooltip
            and readme in tooltip
            and "weights" in tooltip,
            f"tooltip says where to put one: {tooltip[:200]}",
        )
        message = load_error(h, "SRT_ATD-tiny_x4.safetensors")
        check(
            "no checkpoint installed" in message and SECTION in message and readme in message,
            f"queueing says where to put one: {message[:200]}",
        )
    finally:
        ch.stop(h)


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="srt_registration_")
    try:
        with_user_default(tmp)
        without_checkpoints(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [what for ok, what in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
