"""Shared helpers of the golden generator: seeding, random weights, fixture writing."""
import importlib.util
import json
import os
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "k-diffusion", "safetensors")


def generator_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "tests/golden"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def library_versions() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def randomize_(module: torch.nn.Module, scale: float = 0.2) -> None:
    """Replaces every parameter with N(0, scale^2) noise, except norm weights, which get
    1 + N(0, scale^2) so that activations keep a sensible range while still testing gamma."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn_like(param) * scale
            is_norm_weight = name.endswith("weight") and param.dim() == 1
            param.copy_(1.0 + noise if is_norm_weight else noise)


def write_fixture(area: str, case: str, tensors: dict, *, seed: int, config: dict, note: str) -> Path:
    path = DATA / area / f"{case}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    meta = {
        "seed": str(seed),
        "config": json.dumps(config, sort_keys=True),
        "reference": note,
        "generator_commit": generator_commit(),
        "libraries": json.dumps(library_versions(), sort_keys=True),
    }
    save_file(contiguous, str(path), metadata=meta)
    print(f"wrote {path.relative_to(REPO)} ({os.path.getsize(path)} bytes)")
    return path


def import_k_diffusion_sampling():
    """k_diffusion.sampling without the package's __init__, which imports its training and
    evaluation modules (wandb, clip, clean-fid, ...) that do not install next to numpy 2 and current
    setuptools. The samplers need only torch, scipy, torchsde, torchdiffeq and tqdm."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        raise ImportError("k-diffusion is not installed (tests/golden/setup_venv.sh installs it)")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    import k_diffusion.sampling  # noqa: E402  (its utils module loads torchvision, PIL, safetensors)
    return k_diffusion.sampling
