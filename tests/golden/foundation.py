"""Foundation goldens: diffusers' ResnetBlock2D (GroupNorm + SiLU + 3x3 conv + time embedding)
under the LDM key names the C++ modules load."""
import torch
from diffusers.models.resnet import ResnetBlock2D

from common import randomize_, write_fixture

# diffusers ResnetBlock2D -> LDM openaimodel ResBlock key names
LDM_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

CASES = [
    # name, in, out, emb, groups, batch, height, width, seed
    ("resblock_16_32_skip", 16, 32, 24, 8, 2, 8, 6, 1234),
    ("resblock_32_32", 32, 32, 64, 32, 1, 8, 8, 4321),
]


def ldm_name(diffusers_name: str) -> str:
    head, _, tail = diffusers_name.partition(".")
    return f"{LDM_NAMES[head]}.{tail}"


def generate() -> None:
    for name, cin, cout, emb, groups, batch, height, width, seed in CASES:
        torch.manual_seed(seed)
        block = ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=emb, groups=groups,
                              eps=1e-5, non_linearity="silu", output_scale_factor=1.0).eval()
        randomize_(block)
        x = torch.randn(batch, cin, height, width)
        temb = torch.randn(batch, emb)
        with torch.no_grad():
            expected = block(x, temb)
        tensors = {f"block.{ldm_name(k)}": v for k, v in block.state_dict().items()}
        tensors.update({"x": x, "emb": temb, "expected": expected})
        config = {"in_channels": cin, "out_channels": cout, "emb_channels": emb, "groups": groups, "eps": 1e-5}
        write_fixture("foundation", name, tensors, seed=seed, config=config,
                      note="diffusers.models.resnet.ResnetBlock2D")
