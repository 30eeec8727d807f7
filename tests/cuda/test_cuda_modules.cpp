// Whole modules on the GPU against the diffusers / transformers / open_clip goldens (fp16 GEMM
// operands: rel. L2 within 1e-2) and the whole pipeline against the CPU's pixels.
#include <cmath>
#include <cstdlib>
#include <string>

#include "cuda_test_support.hpp"
#include "fixture_configs.hpp"
#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;

namespace {

// A host tensor copied into a device arena taken from `scratch` (the caller holds a Frame).
template <class T = float>
View<T> on_device(const CudaBackend::Context& ctx, Scratch& scratch, const Tensor& host) {
    float* d = scratch.take<float>(static_cast<std::size_t>(host.numel()));
    CudaBackend::upload(ctx, host.data<const float>(), d, host.numel());
    return {d, host.shape()};
}

Tensor fetch(const CudaBackend::Context& ctx, const float* device, const Shape& shape) {
    Tensor host = Tensor::empty(DType::f32, shape);
    CudaBackend::download(ctx, device, host.data<float>(), host.numel());
    return host;
}

std::size_t bytes_of(const Tensor& t) { return Scratch::bytes_for<float>(static_cast<std::size_t>(t.numel())); }

Tensor run_unet_on_gpu(const test::Fixture& fx, const std::string& tag, bool bf16 = false, bool rounded_inputs = true) {
    const auto cfg = test::unet_config(fx.config());
    const nn::WeightMap host = fx.weights("unet.");
    const nn::UNet<CpuBackend, float> cpu_unet(cfg, nn::load_unet<float>(host, "", cfg));  // marks what the UNet takes
    const nn::WeightMap device = nn::upload_weights(host, bf16);
    const nn::UNet<CudaBackend, float> unet(cfg, nn::load_unet<float>(device, "", cfg));
    const Tensor x = fx[tag + ".x"], t = fx[tag + ".t"], context = fx[tag + ".context"];
    const bool adm = cfg.adm_in_channels > 0;
    const Tensor y = adm ? fx[tag + ".y"] : Tensor();
    CudaBackend::Context ctx;
    ctx.set_rounded_linear_inputs(rounded_inputs);
    Scratch scratch(Device::cuda, unet.scratch_bytes(x.shape(), context.dim(1)) + bytes_of(x) * 2 + bytes_of(context) +
                                      (adm ? bytes_of(y) : 0));
    Scratch::Frame frame(scratch);
    const View<float> dx = on_device(ctx, scratch, x), dcontext = on_device(ctx, scratch, context);
    const float* dy = adm ? on_device(ctx, scratch, y).data : nullptr;
    const View<float> out{scratch.take<float>(static_cast<std::size_t>(x.numel())), x.shape()};
    unet.forward(ctx, dx, t.data<const float>(), dcontext, dy, out, scratch);
    return fetch(ctx, out.data, x.shape());
}

std::vector<Image> generate_tiny(ComputeDevice device, int vae_tile = 0) {
    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    o.threads = 2;
    o.device = device;
    Pipeline pipeline(o);
    CHECK(pipeline.device() == (device == ComputeDevice::cpu ? ComputeDevice::cpu : ComputeDevice::cuda));
    if (device != ComputeDevice::cpu) CHECK(pipeline.device_description().find("; convolutions: ") != std::string::npos);
    GenerateParams p;
    p.width = 64;
    p.height = 48;
    p.steps = 4;
    p.seed = 5;
    p.prompt = "a (lighthouse:1.2) at dusk";
    p.negative_prompt = "blurry";
    p.sampler = "uni_pc_bh2";
    p.vae_tile = vae_tile;
    p.vae_tile_overlap = vae_tile / 2;
    Image picture;
    picture.width = 40;
    picture.height = 30;
    picture.channels = 3;
    picture.pixels.resize(40 * 30 * 3);
    for (std::size_t i = 0; i < picture.pixels.size(); ++i) picture.pixels[i] = static_cast<std::uint8_t>((i * 37) % 251);
    p.images.push_back({picture, {}, 1.0f, 0.1f});
    return pipeline.generate(p);
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("UNet on the GPU matches diffusers with and without the unCLIP label embedding, with f16 and bf16 weights") {
    const test::Fixture adm("unet/unet_tiny_adm.safetensors");
    for (const std::string tag : {"a", "b", "c"}) {
        INFO("case " << tag);
        CHECK_CLOSE(run_unet_on_gpu(adm, tag), adm[tag + ".expected"], cuda_test::kHalfTolerance);
    }
    const test::Fixture plain("unet/unet_tiny_plain.safetensors");
    CHECK_CLOSE(run_unet_on_gpu(plain, "a"), plain["a.expected"], cuda_test::kHalfTolerance);
    // bf16 matrices: the transformer blocks' rounded linear inputs are bf16 too.
    CHECK_CLOSE(run_unet_on_gpu(adm, "a", true), adm["a.expected"], cuda_test::kBf16Tolerance);
    // Linear layers rounding their own fp32 inputs (Context::set_rounded_linear_inputs(false)).
    CHECK_CLOSE(run_unet_on_gpu(adm, "a", false, false), adm["a.expected"], cuda_test::kHalfTolerance);
}

TEST_CASE("VAE decode and encode on the GPU match diffusers, whole and in tiles") {
    const test::Fixture fx("vae/vae_tiny.safetensors");
    const auto cfg = test::vae_config(fx.config());
    const nn::WeightMap host = fx.weights("vae.");
    const nn::AutoencoderKL<CpuBackend, float> cpu_vae(cfg, nn::load_vae_encoder<float>(host, "", cfg),
                                                       nn::load_vae_decoder<float>(host, "", cfg));
    const nn::WeightMap device = nn::upload_weights(host);
    const nn::AutoencoderKL<CudaBackend, float> vae(cfg, nn::load_vae_encoder<float>(device, "", cfg),
                                                    nn::load_vae_decoder<float>(device, "", cfg));
    CudaBackend::Context ctx;
    const Tensor latent = fx["latent"], image = fx["image"];
    const Shape decoded{latent.dim(0), 3, latent.dim(2) * cfg.downscale(), latent.dim(3) * cfg.downscale()};
    const Tensor moments_expected = fx["moments"];
    {
        Scratch scratch(Device::cuda, vae.decode_scratch_bytes(latent.shape()) + bytes_of(latent) +
                                          Scratch::bytes_for<float>(static_cast<std::size_t>(decoded.numel())));
        Scratch::Frame frame(scratch);
        const View<float> in = on_device(ctx, scratch, latent);
        const View<float> out{scratch.take<float>(static_cast<std::size_t>(decoded.numel())), decoded};
        vae.decode(ctx, in, out, scratch);
        CHECK_CLOSE(fetch(ctx, out.data, decoded), fx["decoded"], cuda_test::kHalfTolerance);
    }
    {
        Scratch scratch(Device::cuda, vae.encode_scratch_bytes(image.shape()) + bytes_of(image) + bytes_of(moments_expected));
        Scratch::Frame frame(scratch);
        const View<float> in = on_device(ctx, scratch, image);
        const View<float> out{scratch.take<float>(static_cast<std::size_t>(moments_expected.numel())), moments_expected.shape()};
        vae.encode(ctx, in, out, scratch);
        CHECK_CLOSE(fetch(ctx, out.data, moments_expected.shape()), moments_expected, cuda_test::kHalfTolerance);
    }
    {
        // Tiles go through host copies on the GPU too: the result must be the CPU's tiling.
        const Tensor smooth = fx["smooth_latent"];
        const nn::VaeTiling tiling{16, 8};
        const Shape out_shape{smooth.dim(0), 3, smooth.dim(2) * cfg.downscale(), smooth.dim(3) * cfg.downscale()};
        Tensor cpu_out = Tensor::empty(DType::f32, out_shape);
        CpuBackend::Context cpu(2);
        Scratch cpu_scratch(cpu_vae.tiled_decode_scratch_bytes(smooth.shape(), tiling));
        cpu_vae.decode_tiled(cpu, view_of<const float>(smooth), view_of<float>(cpu_out), tiling, cpu_scratch);
        Scratch scratch(Device::cuda, vae.tiled_decode_scratch_bytes(smooth.shape(), tiling) + bytes_of(smooth) +
                                          Scratch::bytes_for<float>(static_cast<std::size_t>(out_shape.numel())));
        Scratch::Frame frame(scratch);
        const View<float> in = on_device(ctx, scratch, smooth);
        const View<float> out{scratch.take<float>(static_cast<std::size_t>(out_shape.numel())), out_shape};
        vae.decode_tiled(ctx, in, out, tiling, scratch);
        CHECK_CLOSE(fetch(ctx, out.data, out_shape), cpu_out, cuda_test::kHalfTolerance);
    }
}

TEST_CASE("CLIP text and vision towers on the GPU match open_clip and transformers") {
    CudaBackend::Context ctx;
    for (const char* name : {"clip/text_open_clip.safetensors", "clip/text_transformers.safetensors"}) {
        INFO(name);
        const test::Fixture fx(name);
        const auto cfg = test::text_config(fx.config());
        const nn::WeightMap host = fx.weights("model.");
        const nn::ClipTextModel<CpuBackend, float> cpu_model(cfg, nn::load_clip_text<float>(host, "", cfg));
        const nn::WeightMap device = nn::upload_weights(host);
        const nn::ClipTextModel<CudaBackend, float> model(cfg, nn::load_clip_text<float>(device, "", cfg));
        const Tensor tokens = fx["tokens"];
        const std::int64_t batch = tokens.dim(0), len = tokens.dim(1);
        std::vector<std::int32_t> ids(tokens.data<const float>(), tokens.data<const float>() + tokens.numel());
        const Shape hidden_shape{batch, len, cfg.width}, pooled_shape{batch, cfg.embed_dim};
        Scratch scratch(Device::cuda, model.scratch_bytes(batch, len) +
                                          Scratch::bytes_for<float>(static_cast<std::size_t>(hidden_shape.numel() + pooled_shape.numel())) +
                                          Scratch::kAlignment);
        Scratch::Frame frame(scratch);
        const View<float> hidden{scratch.take<float>(static_cast<std::size_t>(hidden_shape.numel())), hidden_shape};
        View<float> pooled{scratch.take<float>(static_cast<std::size_t>(pooled_shape.numel())), pooled_shape};
        model.forward(ctx, CView<std::int32_t>{ids.data(), {batch, len}}, hidden, &pooled, scratch);
        CHECK_CLOSE(fetch(ctx, hidden.data, hidden_shape), fx["hidden"], cuda_test::kHalfTolerance);
        CHECK_CLOSE(fetch(ctx, pooled.data, pooled_shape), fx["pooled"], cuda_test::kHalfTolerance);
    }
    for (const char* name : {"clip/vision_transformers_gelu.safetensors", "clip/vision_transformers_quick_gelu.safetensors",
                             "clip/vision_open_clip.safetensors"}) {
        INFO(name);
        const test::Fixture fx(name);
        const auto cfg = test::vision_config(fx.config());
        const nn::WeightMap host = fx.weights("visual.");
        const nn::ClipVisionModel<CpuBackend, float> cpu_model(cfg, nn::load_clip_vision<float>(host, "", cfg));
        const nn::WeightMap device = nn::upload_weights(host);
        const nn::ClipVisionModel<CudaBackend, float> model(cfg, nn::load_clip_vision<float>(device, "", cfg));
        const Tensor pixels = fx["pixels"], expected = fx["image_embeds"];
        Scratch scratch(Device::cuda, model.scratch_bytes(pixels.dim(0)) + bytes_of(pixels) + bytes_of(expected));
        Scratch::Frame frame(scratch);
        const View<float> in = on_device(ctx, scratch, pixels);
        const View<float> out{scratch.take<float>(static_cast<std::size_t>(expected.numel())), expected.shape()};
        model.forward(ctx, in, out, scratch);
        CHECK_CLOSE(fetch(ctx, out.data, expected.shape()), expected, cuda_test::kHalfTolerance);
    }
}

TEST_CASE("end to end: image variations on the GPU match the CPU's pixels") {
    const auto cpu = generate_tiny(ComputeDevice::cpu);
    const auto gpu = generate_tiny(ComputeDevice::cuda);
    const auto automatic = generate_tiny(ComputeDevice::automatic);
    REQUIRE(gpu.size() == cpu.size());
    const double difference = cuda_test::mean_abs_pixel_difference(gpu[0], cpu[0]);
    MESSAGE("mean |GPU - CPU| pixel difference: " << difference << " / 255");
    CHECK(difference < 3.0);
    CHECK(automatic[0].pixels == gpu[0].pixels);  // auto picks the GPU here, deterministically
    // Tiled decodes differ from whole ones by design; the GPU's tiles must be the CPU's.
    CHECK(cuda_test::mean_abs_pixel_difference(generate_tiny(ComputeDevice::cuda, 32)[0], generate_tiny(ComputeDevice::cpu, 32)[0]) < 3.0);
}

TEST_CASE("a GPU index that does not exist is refused by name") {
    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    o.device = ComputeDevice::cuda;
    o.cuda_device = 1000;
    CHECK_THROWS_STATUS(Pipeline{o}, Status::device, "device 1000");
}

}  // TEST_SUITE
