#include <cstring>

#include "test_support.hpp"
#include "unclip/nn/instances.hpp"

using namespace unclip;

namespace {
nn::ResBlockConfig resblock_config(const nlohmann::json& j) {
    nn::ResBlockConfig cfg;
    cfg.in_channels = j.at("in_channels");
    cfg.out_channels = j.at("out_channels");
    cfg.emb_channels = j.at("emb_channels");
    cfg.groups = j.at("groups");
    cfg.eps = j.at("eps");
    return cfg;
}

Tensor run_resblock(const test::Fixture& fx, int threads) {
    const auto cfg = resblock_config(fx.config());
    const auto weights = fx.weights("block.");
    const nn::ResBlock<CpuBackend, float> block(cfg, nn::load_resblock<float>(weights, "", cfg));
    const Tensor x = fx["x"], emb = fx["emb"];
    Tensor y = Tensor::empty(DType::f32, {x.dim(0), cfg.out_channels, x.dim(2), x.dim(3)});
    std::fill(y.data<float>(), y.data<float>() + y.numel(), NAN);  // forward must overwrite everything
    CpuBackend::Context ctx(threads);
    Scratch scratch(block.scratch_bytes(x.shape()));
    block.forward(ctx, view_of<const float>(x), view_of<const float>(emb), view_of<float>(y), scratch);
    CHECK(scratch.used() == 0);
    return y;
}
}  // namespace

TEST_SUITE("foundation") {

TEST_CASE("ResBlock matches diffusers ResnetBlock2D in fp32 on the CPU") {
    for (const char* name : {"foundation/resblock_16_32_skip.safetensors", "foundation/resblock_32_32.safetensors"}) {
        INFO("fixture " << name);
        const test::Fixture fx(name);
        CHECK_CLOSE(run_resblock(fx, 2), fx["expected"], test::kFp32Golden);
    }
}

TEST_CASE("ResBlock output is bit-identical for one and two threads") {
    const test::Fixture fx("foundation/resblock_16_32_skip.safetensors");
    const Tensor one = run_resblock(fx, 1), two = run_resblock(fx, 2);
    CHECK(std::memcmp(one.raw_data(), two.raw_data(), one.nbytes()) == 0);
}

TEST_CASE("ResBlock weights with a wrong shape or a missing tensor are refused by name") {
    const test::Fixture fx("foundation/resblock_16_32_skip.safetensors");
    auto cfg = resblock_config(fx.config());
    auto weights = fx.weights("block.");
    cfg.emb_channels += 1;
    CHECK_THROWS_STATUS(nn::load_resblock<float>(weights, "", cfg), Status::bad_model,
                        "tensor 'emb_layers.1.weight': shape [32, 24], expected [32, 25]");
    cfg.emb_channels -= 1;
    nn::WeightMap partial;
    for (const auto& [name, tensor] : weights.tensors())
        if (name.rfind("skip_connection.", 0) != 0) partial.insert(name, tensor);
    CHECK_THROWS_STATUS(nn::load_resblock<float>(partial, "", cfg), Status::bad_model,
                        "tensor 'skip_connection.weight': missing");
    nn::WeightMap half;
    for (const auto& [name, tensor] : weights.tensors()) half.insert(name, tensor.to(DType::f16));
    CHECK_THROWS_STATUS(nn::load_resblock<float>(half, "", cfg), Status::bad_model, "dtype F16, expected F32");
}

TEST_CASE("ResBlock inputs and outputs of the wrong shape are the caller's error (invalid_argument), named with both shapes") {
    const test::Fixture fx("foundation/resblock_16_32_skip.safetensors");
    const auto cfg = resblock_config(fx.config());
    const nn::ResBlock<CpuBackend, float> block(cfg, nn::load_resblock<float>(fx.weights("block."), "", cfg));
    const Tensor x = fx["x"], emb = fx["emb"];
    CpuBackend::Context ctx(1);
    Scratch scratch(block.scratch_bytes(x.shape()));
    const Shape out_shape{x.dim(0), cfg.out_channels, x.dim(2), x.dim(3)};
    Tensor y = Tensor::empty(DType::f32, out_shape);
    const Tensor narrow_emb = Tensor::zeros(DType::f32, {x.dim(0), cfg.emb_channels - 1});
    CHECK_THROWS_STATUS(block.forward(ctx, view_of<const float>(x), view_of<const float>(narrow_emb), view_of<float>(y), scratch),
                        Status::invalid_argument,
                        "ResBlock: emb has shape " + narrow_emb.shape().str() + ", expected [" + std::to_string(x.dim(0)) +
                            ", " + std::to_string(cfg.emb_channels) + "]");
    Tensor wide = Tensor::empty(DType::f32, {x.dim(0), cfg.out_channels + 1, x.dim(2), x.dim(3)});
    CHECK_THROWS_STATUS(block.forward(ctx, view_of<const float>(x), view_of<const float>(emb), view_of<float>(wide), scratch),
                        Status::invalid_argument, "ResBlock: output has shape " + wide.shape().str() + ", expected " + out_shape.str());
    CHECK(scratch.used() == 0);
}

}  // TEST_SUITE
