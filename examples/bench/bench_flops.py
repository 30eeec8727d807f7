"""Analytic FLOP counts (2 x multiply-adds of the convolutions, linear layers and attention
products; norms, activations and softmax left out) of what the benchmarks run. The UNet count
reproduces the usual SD 2.x figures: 1.61 TFLOP per CFG step (batch 2) at 512 px, 4.30 at 768 px."""


def _conv(cin, cout, hw, k=3):
    return k * k * cin * cout * hw * hw


def unet_cfg_step(size, batch=2, context=77, context_dim=1024, model_channels=320, mult=(1, 2, 4, 4),
                  res_blocks=2, attention_levels=(0, 1, 2), adm=2048, emb=1280):
    """SD 2.x UNet (linear projections, GEGLU feed-forward), one forward of `batch` latents."""
    def res(cin, cout, hw):
        macs = _conv(cin, cout, hw) + _conv(cout, cout, hw) + emb * cout
        return macs + (cin * cout * hw * hw if cin != cout else 0)

    def transformer(c, hw):
        n = hw * hw
        macs = 2 * c * c * n                                    # proj_in, proj_out
        macs += 4 * c * c * n + 2 * n * n * c                   # self-attention: q k v o, QK^T, AV
        macs += 2 * c * c * n + 2 * c * context_dim * context   # cross-attention: q o, k v of the context
        macs += 2 * n * context * c                             # cross-attention: QK^T, AV
        return macs + 8 * c * c * n + 4 * c * c * n             # GEGLU: c -> 8c, 4c -> c

    hw = size // 8
    macs = model_channels * emb + emb * emb + adm * emb + emb * emb + _conv(4, model_channels, hw)
    skips, c = [model_channels], model_channels
    for level, m in enumerate(mult):
        for _ in range(res_blocks):
            macs += res(c, model_channels * m, hw)
            c = model_channels * m
            macs += transformer(c, hw) if level in attention_levels else 0
            skips.append(c)
        if level != len(mult) - 1:
            macs += _conv(c, c, hw // 2)
            hw //= 2
            skips.append(c)
    macs += 2 * res(c, c, hw) + transformer(c, hw)
    for level, m in reversed(list(enumerate(mult))):
        for _ in range(res_blocks + 1):
            macs += res(c + skips.pop(), model_channels * m, hw)
            c = model_channels * m
            macs += transformer(c, hw) if level in attention_levels else 0
        if level != 0:
            hw *= 2
            macs += _conv(c, c, hw)
    macs += _conv(c, 4, hw)
    return 2.0 * batch * macs


def vae_decode(size, ch=128, mult=(1, 2, 4, 4), res_blocks=2, z=4):
    """The KL-f8 decoder on one latent of size/8: mid block (two ResBlocks, one attention), then
    res_blocks + 1 ResBlocks per level with a 3x3 convolution after each 2x upsampling."""
    def res(cin, cout, hw):
        return _conv(cin, cout, hw) + _conv(cout, cout, hw) + (cin * cout * hw * hw if cin != cout else 0)

    hw = size // 8
    c = ch * mult[-1]
    n = hw * hw
    macs = z * z * n + _conv(z, c, hw) + 2 * res(c, c, hw) + 4 * c * c * n + 2 * n * n * c
    for level in reversed(range(len(mult))):
        for _ in range(res_blocks + 1):
            macs += res(c, ch * mult[level], hw)
            c = ch * mult[level]
        if level != 0:
            hw *= 2
            macs += _conv(c, c, hw)
    return 2.0 * (macs + _conv(c, 3, hw))


def _vit(tokens, width, layers, batch=1):
    per_block = tokens * (4 * width * width + 8 * width * width) + 2 * tokens * tokens * width
    return batch * layers * per_block


def clip_text(tokens=77, width=1024, layers=24, embed=1024):
    """OpenCLIP ViT-H/14 text tower, one 77-token prompt, all blocks and the pooled projection."""
    return 2.0 * (_vit(tokens, width, layers) + width * embed)


def clip_vision(image=224, patch=14, width=1280, layers=32, embed=1024):
    """OpenCLIP ViT-H/14 vision tower on one image: patch embedding, blocks, projection."""
    grid = (image // patch) ** 2
    return 2.0 * (3 * patch * patch * width * grid + _vit(grid + 1, width, layers) + width * embed)


def gemm(n):
    return 2.0 * n ** 3


def flops(component, size):
    return {"gemm": gemm, "unet": unet_cfg_step, "vae": vae_decode,
            "text": lambda s: clip_text(), "vision": lambda s: clip_vision(s)}[component](size)


if __name__ == "__main__":
    for s in (512, 768, 1024):
        print(f"UNet CFG step {s} px: {unet_cfg_step(s) / 1e12:.2f} TFLOP, VAE decode: {vae_decode(s) / 1e12:.2f} TFLOP")
    print(f"CLIP text: {clip_text() / 1e9:.1f} GFLOP, CLIP vision: {clip_vision() / 1e9:.1f} GFLOP")
