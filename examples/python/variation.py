"""An image variation from Python through the unclip module (unclip.py, beside this file).

    python3 variation.py LIBUNCLIP.so MODEL IMAGE OUT.png [--allow-reduced]
"""
import sys

import unclip


def main(argv):
    if len(argv) < 5:
        print(__doc__)
        return 2
    unclip.load(argv[1])
    print("unclip", unclip.version())
    try:
        with unclip.Pipeline(argv[2], allow_reduced="--allow-reduced" in argv[5:]) as pipeline:
            cond = unclip.Conditioning(unclip.Image.load(argv[3]), noise_augmentation=0.1)
            images = pipeline.generate([cond], "a watercolour painting", width=64, height=64, steps=4, seed=42,
                                       on_progress=lambda p: print(f"step {p.step}/{p.steps}") or True)
            images[0].save_png(argv[4])
    except unclip.Error as e:
        print("error:", e, file=sys.stderr)
        return 1
    print(f"wrote {argv[4]} ({images[0].width}x{images[0].height})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
