#include <cstring>
#include <string>

#include "cpu_reading_upsampled.hpp"
#include "test_support.hpp"
#include "unclip/nn/instances.hpp"
#include "unet_fixture.hpp"

using namespace unclip;

namespace {

template <class Backend>
Tensor run_unet(const nn::UNet<Backend, float>& unet, const test::Fixture& fx, const std::string& tag, int threads) {
    const Tensor x = fx[tag + ".x"], t = fx[tag + ".t"], context = fx[tag + ".context"];
    const bool adm = unet.config().adm_in_channels > 0;
    const Tensor y = adm ? fx[tag + ".y"] : Tensor();
    Tensor out = Tensor::empty(DType::f32, x.shape());
    std::fill(out.data<float>(), out.data<float>() + out.numel(), NAN);
    CpuBackend::Context ctx(threads);
    Scratch scratch(unet.scratch_bytes(x.shape(), context.dim(1)));
    unet.forward(ctx, view_of<const float>(x), t.data<const float>(), view_of<const float>(context),
                 adm ? y.data<const float>() : nullptr, view_of<float>(out), scratch);
    CHECK(scratch.used() == 0);
    return out;
}
}  // namespace

TEST_SUITE("unet") {

TEST_CASE("UNet matches diffusers UNet2DConditionModel with the unCLIP projection class embedding") {
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(fx.weights("unet."), "", cfg));
    for (const std::string tag : {"a", "b", "c"}) {
        INFO("case " << tag << ": latent " << fx[tag + ".x"].shape().str());
        CHECK_CLOSE(run_unet(unet, fx, tag, 2), fx[tag + ".expected"], test::kFp32Golden);
    }
}

TEST_CASE("UNet without label embedding matches diffusers as plain SD 2.x") {
    const test::Fixture fx("unet/unet_tiny_plain.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(fx.weights("unet."), "", cfg));
    CHECK_CLOSE(run_unet(unet, fx, "a", 2), fx["a.expected"], test::kFp32Golden);
}

TEST_CASE("UNet with the upsampling read through by the convolution (the CUDA modules' path) gives the same bits") {
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::WeightMap weights = fx.weights("unet.");
    const nn::UNet<CpuBackend, float> plain(cfg, nn::load_unet<float>(weights, "", cfg));
    const nn::UNet<test::CpuReadingUpsampled, float> fused(cfg, nn::load_unet<float>(weights, "", cfg));
    for (const std::string tag : {"a", "b"}) {  // 16x16 and 16x8: every upsampling doubles exactly
        INFO("case " << tag);
        const Tensor want = run_unet(plain, fx, tag, 2), got = run_unet(fused, fx, tag, 2);
        CHECK(std::memcmp(got.data<const float>(), want.data<const float>(), want.nbytes()) == 0);
        CHECK_CLOSE(got, fx[tag + ".expected"], test::kFp32Golden);
    }
}

TEST_CASE("UNet output is bit-identical for one and two threads") {
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(fx.weights("unet."), "", cfg));
    const Tensor one = run_unet(unet, fx, "a", 1), two = run_unet(unet, fx, "a", 2);
    CHECK(std::memcmp(one.raw_data(), two.raw_data(), one.nbytes()) == 0);
}

TEST_CASE("UNet refuses a missing label embedding, a wrong ADM width and a missing ADM vector by name") {
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    auto cfg = test::unet_config(fx.config());
    const auto weights = fx.weights("unet.");
    auto wrong = cfg;
    wrong.adm_in_channels = 2048;
    CHECK_THROWS_STATUS(nn::load_unet<float>(weights, "", wrong), Status::bad_model,
                        "tensor 'label_emb.0.0.weight': shape [32, 12], expected [32, 2048]");
    nn::WeightMap partial;
    for (const auto& [name, tensor] : weights.tensors())
        if (name.rfind("output_blocks.4.1.", 0) != 0) partial.insert(name, tensor);
    CHECK_THROWS_STATUS(nn::load_unet<float>(partial, "", cfg), Status::bad_model, "tensor 'output_blocks.4.1.");

    const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(weights, "", cfg));
    const Tensor x = fx["a.x"], t = fx["a.t"], context = fx["a.context"];
    Tensor out = Tensor::empty(DType::f32, x.shape());
    CpuBackend::Context ctx(1);
    Scratch scratch(unet.scratch_bytes(x.shape(), context.dim(1)));
    CHECK_THROWS_STATUS(unet.forward(ctx, view_of<const float>(x), t.data<const float>(), view_of<const float>(context),
                                     nullptr, view_of<float>(out), scratch),
                        Status::invalid_argument, "ADM vector");
    const Tensor bad_context = Tensor::zeros(DType::f32, {2, 5, 17});
    CHECK_THROWS_STATUS(unet.forward(ctx, view_of<const float>(x), t.data<const float>(), view_of<const float>(bad_context),
                                     fx["a.y"].data<const float>(), view_of<float>(out), scratch),
                        Status::invalid_argument, "context [2, 5, 17]");
}

TEST_CASE("UNet split into embed and forward_embedded (the GPU graph's path), with or without projected context keys and values, gives forward's bits") {
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(fx.weights("unet."), "", cfg));
    const Tensor whole = run_unet(unet, fx, "b", 2);
    const Tensor x = fx["b.x"], t = fx["b.t"], context = fx["b.context"], y = fx["b.y"];
    const std::int64_t batch = x.dim(0), ted = cfg.time_embed_dim();
    CpuBackend::Context ctx(2);
    Scratch scratch(unet.scratch_bytes(x.shape(), context.dim(1)));
    Tensor emb = Tensor::empty(DType::f32, {batch, ted});
    Tensor out = Tensor::empty(DType::f32, x.shape());
    std::fill(out.data<float>(), out.data<float>() + out.numel(), NAN);
    unet.embed(ctx, t.data<const float>(), y.data<const float>(), view_of<float>(emb), scratch);
    CHECK(scratch.used() == 0);
    unet.forward_embedded(ctx, view_of<const float>(x), view_of<const float>(emb), view_of<const float>(context),
                          view_of<float>(out), scratch);
    CHECK(scratch.used() == 0);
    CHECK(std::memcmp(out.raw_data(), whole.raw_data(), out.nbytes()) == 0);

    // Cross-attention keys and values projected once, for this context and for one of twice the
    // rows whose first half is this one (a CFG loop's positive rows): the same bits again.
    for (const std::int64_t kv_batch : {batch, 2 * batch}) {
        INFO("keys and values for " << kv_batch << " context rows");
        Tensor contexts = Tensor::empty(DType::f32, {kv_batch, context.dim(1), context.dim(2)});
        for (std::int64_t r = 0; r < kv_batch; ++r)
            std::copy_n(context.data<const float>() + (r % batch) * context.dim(1) * context.dim(2),
                        context.dim(1) * context.dim(2), contexts.data<float>() + r * context.dim(1) * context.dim(2));
        std::vector<float> kv(static_cast<std::size_t>(unet.context_kv_floats(kv_batch, context.dim(1))));
        unet.project_context(ctx, view_of<const float>(contexts), kv.data());
        std::fill(out.data<float>(), out.data<float>() + out.numel(), NAN);
        unet.forward_embedded(ctx, view_of<const float>(x), view_of<const float>(emb), view_of<const float>(context),
                              view_of<float>(out), scratch, kv.data(), kv_batch);
        CHECK(std::memcmp(out.raw_data(), whole.raw_data(), out.nbytes()) == 0);
        // And they are what the cross-attentions read: zeroed, the output changes.
        std::fill(kv.begin(), kv.end(), 0.0f);
        unet.forward_embedded(ctx, view_of<const float>(x), view_of<const float>(emb), view_of<const float>(context),
                              view_of<float>(out), scratch, kv.data(), kv_batch);
        CHECK(std::memcmp(out.raw_data(), whole.raw_data(), out.nbytes()) != 0);
    }
    CHECK_THROWS_STATUS(unet.forward_embedded(ctx, view_of<const float>(x), view_of<const float>(emb),
                                              view_of<const float>(context), view_of<float>(out), scratch, emb.data<float>(),
                                              batch - 1),
                        Status::invalid_argument, "keys and values projected for");

    Tensor narrow = Tensor::empty(DType::f32, {batch, ted - 1});
    CHECK_THROWS_STATUS(unet.embed(ctx, t.data<const float>(), y.data<const float>(), view_of<float>(narrow), scratch),
                        Status::invalid_argument, "embedding [" + std::to_string(batch) + ", " + std::to_string(ted - 1) + "]");
    const Tensor extra_row = Tensor::zeros(DType::f32, {batch + 1, ted});
    CHECK_THROWS_STATUS(unet.forward_embedded(ctx, view_of<const float>(x), view_of<const float>(extra_row),
                                              view_of<const float>(context), view_of<float>(out), scratch),
                        Status::invalid_argument, "embedding");
    CHECK_THROWS_STATUS(unet.embed(ctx, t.data<const float>(), nullptr, view_of<float>(emb), scratch),
                        Status::invalid_argument, "ADM vector");
}

}  // TEST_SUITE
