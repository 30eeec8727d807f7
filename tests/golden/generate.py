"""Writes the golden fixtures under tests/data/<area>/ from tiny random-weight models built with
the reference libraries' own classes. Run through regenerate.sh, which sets up the pinned venv.

    python generate.py               # every area
    python generate.py foundation    # only the named areas
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import importlib  # noqa: E402

import torch  # noqa: E402

# Every tests/golden/<area>.py with a generate() function is an area.
HERE = Path(__file__).resolve().parent
AREAS = {}
for source in sorted(HERE.glob("*.py")):
    if source.stem in ("generate", "common"):
        continue
    module = importlib.import_module(source.stem)
    if hasattr(module, "generate"):
        AREAS[source.stem] = module.generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help=f"areas to regenerate (default: all of {', '.join(sorted(AREAS))})")
    args = parser.parse_args()
    unknown = sorted(set(args.areas) - set(AREAS))
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; known: {', '.join(sorted(AREAS))}")
    torch.set_num_threads(1)  # deterministic reductions
    for area in args.areas or sorted(AREAS):
        AREAS[area]()


if __name__ == "__main__":
    main()
