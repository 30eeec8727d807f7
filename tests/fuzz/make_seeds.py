#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Standard library only, except the JPEG seeds, which need Pillow (skipped without it).
Run from anywhere: python3 tests/fuzz/make_seeds.py
"""
import io
import json
import os
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


class Pickle:
    """A protocol-2 pickle written opcode by opcode, as torch.save writes state dicts."""

    def __init__(self):
        self.b = bytearray(b"\x80\x02")

    def op(self, c):
        self.b += c
        return self

    def str(self, s):
        s = s.encode()
        self.b += b"X" + struct.pack("<I", len(s)) + s
        return self

    def int(self, v):
        self.b += b"J" + struct.pack("<i", v)
        return self

    def glob(self, module, name):
        self.b += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def ints(self, values):
        self.op(b"(")
        for v in values:
            self.int(v)
        return self.op(b"t")

    def tensor(self, storage, key, numel, offset, size, stride):
        self.glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
        self.op(b"(").str("storage").glob("torch", storage).str(key).str("cpu").int(numel).op(b"t").op(b"Q")
        self.int(offset).ints(size).ints(stride).op(b"\x89")
        self.glob("collections", "OrderedDict").op(b")").op(b"R")
        return self.op(b"t").op(b"R")

    def finish(self):
        return bytes(self.b + b".")


def state_dict_pickle(lightning):
    p = Pickle()
    if lightning:
        p.op(b"}").op(b"q\x00").op(b"(").str("global_step").int(10).str("state_dict")
    p.glob("collections", "OrderedDict").op(b")").op(b"R").op(b"q\x01").op(b"(")
    p.str("model.diffusion_model.input_blocks.0.0.weight").tensor("FloatStorage", "0", 6, 0, [2, 3], [3, 1])
    p.str("first_stage_model.decoder.conv_in.bias").tensor("HalfStorage", "1", 4, 1, [3], [1])
    p.str("cond_stage_model.model.positional_embedding").tensor("BFloat16Storage", "2", 4, 0, [2, 2], [1, 2])
    p.op(b"u")
    if lightning:
        p.op(b"u")
    return p.finish()


def ckpt(pkl, compress_pickle=False):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pkl, zipfile.ZIP_DEFLATED if compress_pickle else zipfile.ZIP_STORED)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/data/0", struct.pack("<6f", 1, 2, 3, 4, 5, 6))
        z.writestr("archive/data/1", struct.pack("<4e", 1, 2, 3, 4))
        z.writestr("archive/data/2", b"\x80\x3f\x00\x40\x40\x40\x80\x40")
        z.writestr("archive/version", b"3\n")
    return out.getvalue()


def png(width, height, channels, bit_depth=8):
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + bytes((x * 7 + y * 13) % 256 for x in range(width * channels * bit_depth // 8))
                   for y in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bmp(width, height):
    row = (width * 3 + 3) // 4 * 4
    pixels = b"".join(bytes((x + y) % 256 for x in range(width * 3)) + b"\x00" * (row - width * 3) for y in range(height))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def gif():
    # 2x2, a 2-colour global table, one image with minimum code size 2 (codes: clear, 0,1,0,1, end).
    return (b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff" +
            b"\x2c" + struct.pack("<HHHHB", 0, 0, 2, 2, 0) + b"\x02\x02\x44\x0a\x00\x3b")


def main():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    write("safetensors", "two_tensors", safetensors(
        {"a.weight": ("F32", [2, 3], f32), "b.bias": ("F16", [2], struct.pack("<2e", 1, 2))}, {"format": "pt"}))
    write("safetensors", "empty_and_int", safetensors({"e": ("F32", [0, 4], b""), "i": ("I64", [1], b"\x01" * 8)}))
    write("safetensors", "bf16_rank4", safetensors({"w": ("BF16", [1, 1, 2, 2], b"\x80\x3f" * 4)}))

    write("pickle", "state_dict", state_dict_pickle(False))
    write("pickle", "lightning", state_dict_pickle(True))
    write("ckpt", "state_dict", ckpt(state_dict_pickle(False)))
    write("ckpt", "lightning_deflated_pickle", ckpt(state_dict_pickle(True), compress_pickle=True))

    for component in ("unet", "vae", "text_encoder", "image_encoder"):
        with open(os.path.join(ROOT, "tests/data/checkpoint/tiny_unclip_l", component, "config.json"), "rb") as f:
            write("diffusers_config", component, f.read())

    prompts = ["a photo of a cat", "(masterpiece:1.2), ((best quality)), \\(escaped\\) [x] (a:b:0.5)",
               "embedding:foo (bar:1e1) (baz:-0.5) caf\u00e9 \u3053\u3093\u306b\u3061\u306f \ufb01 \uff21",
               "((((((deep))))))  unbalanced ( ) ) (", "word " * 90]
    for i, p in enumerate(prompts):
        write("prompt", "prompt%d" % i, bytes([i]) + p.encode())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "c": 3, "at</w>": 4, "cat</w>": 5, "a": 6, "t</w>": 7}
    write("prompt", "tokenizer", b"\x03" + json.dumps(vocab).encode() + b"\x00#version: 0.2\na t</w>\nc at</w>\n\x00a cat")

    write("image", "grey.png", png(3, 2, 1))
    write("image", "rgba.png", png(4, 3, 4))
    write("image", "grey_alpha16.png", png(2, 2, 2, 16))
    write("image", "rgb.bmp", bmp(3, 2))
    write("image", "tiny.gif", gif())
    try:
        from PIL import Image
        for mode, name, kwargs in (("RGB", "baseline.jpg", {}), ("RGB", "progressive.jpg", {"progressive": True}),
                                   ("L", "grey.jpg", {})):
            img = Image.new(mode, (9, 7))
            values = [(x * 29 + y * 7) % 256 for y in range(7) for x in range(9)]
            img.putdata([v if mode == "L" else (v, v // 2, 255 - v) for v in values])
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80, **kwargs)
            write("image", name, buf.getvalue())
    except ImportError:
        print("make_seeds: Pillow not found, JPEG seeds skipped")

    # The C API target reads a little program of calls; these are arbitrary starting points.
    write("capi", "generate", bytes([0, 0, 1, 0, 0, 1, 2, 8, 1, 5, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 6, 6, 2]) + b"\x00" * 16)
    write("capi", "open", bytes([1, 1, 1, 0, 1, 2, 0, 0, 0, 0, 3, 1, 0, 1]))
    write("capi", "small_calls", bytes([2, 5]) + b"euler" + bytes([1, 7, 0, 0, 0, 3, 4]) + bytes(range(64)))


if __name__ == "__main__":
    main()
