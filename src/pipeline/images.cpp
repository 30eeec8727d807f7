// Between pixels and latents: VAE decode/encode with ComfyUI's conversions, the fast latent preview
// and latent-sized masks.
#include <algorithm>
#include <cmath>

#include "pipeline/pipeline_impl.hpp"

namespace unclip::pipeline {
namespace {
// Above this the decode runs in tiles (ComfyUI falls back to tiles on out-of-memory; we decide up
// front): a 1024x1024 decode needs about 2 GiB of activations in fp32.
constexpr std::size_t kWholeDecodeLimit = std::size_t{2} << 30;
const nn::VaeTiling kDecodeTiling{64, 8};  // ComfyUI VAEDecodeTiled defaults: 512 px tiles, 64 px overlap

// comfy/latent_formats.py SD15.latent_rgb_factors: rows are latent channels, columns R, G, B.
constexpr float kLatentRgb[4][3] = {
    {0.3512f, 0.2297f, 0.3227f}, {0.3250f, 0.4974f, 0.2350f}, {-0.2829f, 0.1762f, 0.2721f}, {-0.2120f, -0.2616f, -0.7177f}};

Image empty_image(std::int64_t height, std::int64_t width) {
    Image image;
    image.width = static_cast<int>(width);
    image.height = static_cast<int>(height);
    image.channels = 3;
    image.pixels.resize(static_cast<std::size_t>(height * width * 3));
    return image;
}

// The whole decode on the GPU unless asked for tiles (tile > 0, in latent pixels) or the
// activations would take more than half of the GPU's free memory; then tiles as on the CPU. The
// pixels become bytes there (CudaBackend::to_rgb8), and only those come back.
std::vector<Image> decode_on_gpu(GpuModels& g, const Tensor& latents, std::int64_t height, std::int64_t width,
                                 std::int64_t tile, std::int64_t overlap) {
    const auto& vae = *g.vae;
    g.ctx.activate();  // memory_info reads the calling thread's current GPU
    std::size_t free_bytes = 0, total_bytes = 0;
    cuda::memory_info(free_bytes, total_bytes);
    const std::size_t whole = vae.decode_scratch_bytes(latents.shape());
    const bool tiled = tile > 0 || whole > (free_bytes + g.scratch.capacity()) / 2;
    const nn::VaeTiling tiling = tile > 0 ? nn::VaeTiling{tile, overlap} : kDecodeTiling;
    const std::int64_t batch = latents.dim(0), bytes_per_image = height * width * 3;
    const auto pixel_floats = static_cast<std::size_t>(batch * 3 * height * width);
    g.reserve((tiled ? vae.tiled_decode_scratch_bytes(latents.shape(), tiling) : whole) +
              Scratch::bytes_for<float>(static_cast<std::size_t>(latents.numel())) + Scratch::bytes_for<float>(pixel_floats) +
              Scratch::bytes_for<std::uint8_t>(static_cast<std::size_t>(batch * bytes_per_image)));
    Scratch::Frame frame(g.scratch);
    const CView<float> in{g.stage(latents.data<const float>(), latents.numel()), latents.shape()};
    const View<float> out{g.scratch.take<float>(pixel_floats), {batch, 3, height, width}};
    std::uint8_t* bytes = g.scratch.take<std::uint8_t>(static_cast<std::size_t>(batch * bytes_per_image));
    if (tiled) vae.decode_tiled(g.ctx, in, out, tiling, g.scratch);
    else vae.decode(g.ctx, in, out, g.scratch);
    CudaBackend::to_rgb8(g.ctx, out.data, batch, height, width, bytes);
    std::vector<Image> images;
    for (std::int64_t b = 0; b < batch; ++b) {
        images.push_back(empty_image(height, width));
        CudaBackend::download_bytes(g.ctx, bytes + b * bytes_per_image, images.back().pixels.data(),
                                    static_cast<std::size_t>(bytes_per_image));
    }
    return images;
}

}  // namespace

std::vector<Image> decode_latents(Pipeline::Impl& impl, const Tensor& latents, int vae_tile, int vae_tile_overlap) {
    const auto& vae = *impl.models->vae;
    const std::int64_t batch = latents.dim(0), h = latents.dim(2), w = latents.dim(3), f = vae.config().downscale();
    Tensor unscaled = latents.clone();
    for (std::int64_t i = 0; i < unscaled.numel(); ++i) unscaled.data<float>()[i] /= vae.config().scaling_factor;
    if (impl.gpu) return decode_on_gpu(*impl.gpu, unscaled, h * f, w * f, vae_tile / f, vae_tile_overlap / f);
    Tensor pixels = Tensor::empty(DType::f32, {batch, 3, h * f, w * f});
    const std::size_t whole = vae.decode_scratch_bytes(unscaled.shape());
    if (vae_tile > 0) {
        const nn::VaeTiling tiling{vae_tile / f, vae_tile_overlap / f};
        impl.reserve(vae.tiled_decode_scratch_bytes(unscaled.shape(), tiling));
        vae.decode_tiled(impl.ctx, view_of<const float>(unscaled), view_of<float>(pixels), tiling, impl.scratch);
    } else if (whole <= kWholeDecodeLimit) {
        impl.reserve(whole);
        vae.decode(impl.ctx, view_of<const float>(unscaled), view_of<float>(pixels), impl.scratch);
    } else {
        impl.reserve(vae.tiled_decode_scratch_bytes(unscaled.shape(), kDecodeTiling));
        vae.decode_tiled(impl.ctx, view_of<const float>(unscaled), view_of<float>(pixels), kDecodeTiling, impl.scratch);
    }
    std::vector<Image> images;
    const std::int64_t plane = h * f * w * f;
    for (std::int64_t b = 0; b < batch; ++b) {
        Image image = empty_image(h * f, w * f);
        const float* src = pixels.data<const float>() + b * 3 * plane;
        for (std::int64_t p = 0; p < plane; ++p)
            for (int c = 0; c < 3; ++c)
                image.pixels[static_cast<std::size_t>(p * 3 + c)] = backend::decoded_byte(src[c * plane + p]);
        images.push_back(std::move(image));
    }
    return images;
}

Tensor encode_latent(Pipeline::Impl& impl, const Image& image) {
    const auto& vae = *impl.models->vae;
    const int f = vae.config().downscale();
    check_image_size(image.width, image.height, impl.options.image_limits);
    check_image_pixels(image, "init image");
    const int width = image.width / f * f, height = image.height / f * f;
    if (width == 0 || height == 0)
        throw Error(Status::bad_image, "init image is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                           ", smaller than one latent pixel (" + std::to_string(f) + "x" + std::to_string(f) + ")");
    // VAEEncode crops the excess centred: offset (side % 8) // 2 on each axis.
    const int x0 = (image.width % f) / 2, y0 = (image.height % f) / 2;
    const backend::ImageBytes bytes{image.pixels.data(), image.width, image.height, image.channels};
    const Shape pixel_shape{1, 3, height, width};
    Tensor moments = Tensor::empty(DType::f32, {1, 2 * vae.config().embed_dim, height / f, width / f});
    if (impl.gpu) {
        // The bytes go up (a quarter of the floats) and become the encoder's input there.
        GpuModels& g = *impl.gpu;
        g.ctx.activate();
        g.reserve(g.vae->encode_scratch_bytes(pixel_shape) + Scratch::bytes_for<std::uint8_t>(image.pixels.size()) +
                  Scratch::bytes_for<float>(static_cast<std::size_t>(pixel_shape.numel())) +
                  Scratch::bytes_for<float>(static_cast<std::size_t>(moments.numel())));
        Scratch::Frame frame(g.scratch);
        backend::ImageBytes device_bytes = bytes;
        auto* device_pixels = g.scratch.take<std::uint8_t>(image.pixels.size());
        CudaBackend::upload_bytes(g.ctx, image.pixels.data(), device_pixels, image.pixels.size());
        device_bytes.pixels = device_pixels;
        const View<float> input{g.scratch.take<float>(static_cast<std::size_t>(pixel_shape.numel())), pixel_shape};
        const View<float> output{g.scratch.take<float>(static_cast<std::size_t>(moments.numel())), moments.shape()};
        CudaBackend::vae_input(g.ctx, device_bytes, x0, y0, height, width, input.data);
        g.vae->encode(g.ctx, input, output, g.scratch);
        CudaBackend::download(g.ctx, output.data, moments.data<float>(), moments.numel());
    } else {
        Tensor pixels = Tensor::empty(DType::f32, pixel_shape);
        float* dst = pixels.data<float>();
        const std::int64_t plane = static_cast<std::int64_t>(width) * height;
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < height; ++y)
                for (int x = 0; x < width; ++x)
                    dst[c * plane + static_cast<std::int64_t>(y) * width + x] = backend::vae_input_at(bytes, x0, y0, c, y, x);
        impl.reserve(vae.encode_scratch_bytes(pixels.shape()));
        vae.encode(impl.ctx, view_of<const float>(pixels), view_of<float>(moments), impl.scratch);
    }
    // The posterior mean (ComfyUI's VAEEncode takes the mode), in sampling space.
    Tensor latent = moments.slice(1, 0, vae.config().embed_dim).clone();
    for (std::int64_t i = 0; i < latent.numel(); ++i) latent.data<float>()[i] *= vae.config().scaling_factor;
    return latent;
}

Image latent_preview(const float* latent, std::int64_t height, std::int64_t width) {
    Image image;
    image.width = static_cast<int>(width);
    image.height = static_cast<int>(height);
    image.channels = 3;
    image.pixels.resize(static_cast<std::size_t>(width * height * 3));
    const std::int64_t plane = width * height;
    for (std::int64_t p = 0; p < plane; ++p)
        for (int c = 0; c < 3; ++c) {
            float v = 0.0f;
            for (int k = 0; k < 4; ++k) v += latent[k * plane + p] * kLatentRgb[k][c];
            image.pixels[static_cast<std::size_t>(p * 3 + c)] = backend::decoded_byte(v);
        }
    return image;
}

std::vector<float> latent_mask(const Image& mask, std::int64_t height, std::int64_t width) {
    if (mask.width <= 0 || mask.height <= 0 || mask.pixels.empty()) throw Error(Status::bad_image, "mask image is empty");
    check_image_pixels(mask, "mask");
    const bool alpha = mask.channels == 2 || mask.channels == 4;
    auto weight = [&](int x, int y) {
        const float v = mask.at(x, y, alpha ? mask.channels - 1 : 0) / 255.0f;
        return alpha ? 1.0f - v : v;
    };
    // Bilinear, align_corners=False (torch.nn.functional.interpolate as comfy.utils.reshape_mask).
    std::vector<float> out(static_cast<std::size_t>(height * width));
    const float sy = static_cast<float>(mask.height) / static_cast<float>(height);
    const float sx = static_cast<float>(mask.width) / static_cast<float>(width);
    for (std::int64_t y = 0; y < height; ++y) {
        const float fy = std::max(0.0f, (static_cast<float>(y) + 0.5f) * sy - 0.5f);
        const int y0 = std::min(static_cast<int>(fy), mask.height - 1), y1 = std::min(y0 + 1, mask.height - 1);
        const float ty = fy - static_cast<float>(y0);
        for (std::int64_t x = 0; x < width; ++x) {
            const float fx = std::max(0.0f, (static_cast<float>(x) + 0.5f) * sx - 0.5f);
            const int x0 = std::min(static_cast<int>(fx), mask.width - 1), x1 = std::min(x0 + 1, mask.width - 1);
            const float tx = fx - static_cast<float>(x0);
            const float top = weight(x0, y0) * (1 - tx) + weight(x1, y0) * tx;
            const float bottom = weight(x0, y1) * (1 - tx) + weight(x1, y1) * tx;
            out[static_cast<std::size_t>(y * width + x)] = top * (1 - ty) + bottom * ty;
        }
    }
    return out;
}

}  // namespace unclip::pipeline
