"""Tiny configs of every family (RGT, nhs2828 RGT, DRCT, ATD, HAT, DAT, SwinIR): fast on the CPU,
with every kind of cached geometry. Shared by the contract, graph and compile tests."""

from __future__ import annotations

from srt.arch.atd import ATD, ATDConfig
from srt.arch.dat import DAT, DATConfig
from srt.arch.drct import DRCT, DRCTConfig
from srt.arch.hat import HAT, HATConfig
from srt.arch.rgt import RGT, RGTConfig
from srt.arch.rgt_nhs2828 import NHS2828RGT, NHS2828Config
from srt.arch.swinir import SwinIR, SwinIRConfig

# Tiny configs of every family: fast on the CPU, and every kind of cached geometry.
TINY = {
    "RGT": lambda: RGT(RGTConfig(embed_dim=64, depths=(2,), num_heads=(2,), split_size=(4, 8), scale=2)),
    "DRCT": lambda: DRCT(DRCTConfig(embed_dim=12, num_heads=(2,), window_size=4, gc=4, scale=2)),
    "ATD": lambda: ATD(
        ATDConfig(
            embed_dim=12,
            depths=(2,),
            num_heads=(2,),
            window_size=4,
            category_size=16,
            num_tokens=8,
            reducted_dim=4,
            scale=2,
        )
    ),
    "RGT_nhs2828": lambda: NHS2828RGT(
        NHS2828Config(embed_dim=12, depths=(1,), num_heads=(2,), pos_dim=2, mlp_ratio=1.0)
    ),
    # trained on 8 px > the 4 px window: odd blocks shift (masks cached); OCAB keys from 6 px windows
    "HAT": lambda: HAT(
        HATConfig(
            embed_dim=12,
            depths=(2,),
            num_heads=(2,),
            window_size=4,
            img_size=8,
            compress_ratio=3,
            squeeze_factor=6,
            num_feat=8,
            scale=2,
        )
    ),
    "SwinIR": lambda: SwinIR(
        SwinIRConfig(embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, num_feat=8, scale=2)
    ),
    # three blocks: spatial, channel, then a shifted spatial block (2 x 4 and 4 x 2 windows and
    # their border pieces: a position bias per piece shape)
    "DAT": lambda: DAT(
        DATConfig(embed_dim=32, depths=(3,), num_heads=(4,), mlp_ratio=2.0, split_size=(2, 4), scale=2)
    ),
}
