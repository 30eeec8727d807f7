#include <string>

#include "sampling_support.hpp"
#include "unclip/nn/instances.hpp"
#include "unet_fixture.hpp"
#include "unclip/sampling/conditioning.hpp"
#include "unclip/sampling/denoiser.hpp"
#include "unclip/sampling/samplers.hpp"

using namespace unclip;
using namespace unclip::sampling;

TEST_SUITE("sampling") {

TEST_CASE("A KSampler run around the tiny unCLIP UNet matches ComfyUI's composition around diffusers' UNet") {
    const test::Fixture fx("sampling/unet_e2e.safetensors");
    const auto config = fx.config();
    const test::Fixture weights_fx(config.at("weights").get<std::string>());
    const auto unet_cfg = test::unet_config(weights_fx.config());
    const nn::UNet<CpuBackend, float> unet(unet_cfg, nn::load_unet<float>(weights_fx.weights("unet."), "", unet_cfg));
    const auto latent_shape = config.at("latent");
    const Shape row_shape{1, latent_shape[1].get<std::int64_t>(), latent_shape[2].get<std::int64_t>(),
                          latent_shape[3].get<std::int64_t>()};
    const auto model = ModelSchedule::scaled_linear();
    const nn::NoiseAugmentor augmentor({config.at("embedding_dim").get<std::int64_t>()});

    for (const auto& run : config.at("runs")) {
        INFO(run.dump());
        const std::string name = run.at("name");
        const std::uint64_t seed = std::stoull(run.at("seed").get<std::string>());
        // unCLIPConditioning on the positive prompt only: the negative's ADM vector is zeros.
        UnclipImage image{test::values(fx[name + ".embeds"]), run.at("strength").get<double>(),
                          run.at("noise_augmentation").get<double>()};
        std::vector<float> y = comfy_unclip_adm(augmentor, {image}, seed);
        const std::vector<float> y_negative = comfy_unclip_adm(augmentor, {}, seed);
        y.insert(y.end(), y_negative.begin(), y_negative.end());  // [2, adm]: positive row, negative row
        const Tensor context = fx[name + ".context"];              // [2, L, C]: positive, negative

        const ModelFn network = [&](const ModelCall& call) {
            REQUIRE(call.rows == 2);
            REQUIRE(call.positive_rows == 1);
            const Shape x_shape{call.rows, row_shape[1], row_shape[2], row_shape[3]};
            const float timesteps[2] = {call.timestep, call.timestep};
            Scratch scratch(unet.scratch_bytes(x_shape, context.dim(1)));
            CpuBackend::Context ctx(2);
            unet.forward(ctx, CView<float>{call.input, x_shape}, timesteps, view_of<const float>(context), y.data(),
                         View<float>{call.output, x_shape}, scratch);
        };
        DenoiserConfig denoiser_config;
        denoiser_config.prediction = Prediction::v;
        denoiser_config.row_size = row_shape.numel();
        denoiser_config.cfg_scale = run.at("cfg").get<double>();
        Denoiser denoiser(model, denoiser_config, network);

        KSamplerParams params;
        params.sampler = sampler_from_name(run.at("sampler").get<std::string>());
        params.scheduler = scheduler_from_name(run.at("scheduler").get<std::string>());
        params.steps = run.at("steps").get<int>();
        params.seed = seed;
        std::vector<float> out =
            ksample(params, model, std::ref(denoiser), std::vector<float>(static_cast<std::size_t>(row_shape.numel()), 0.0f));
        // The UNet alone agrees with diffusers to 1e-5 (unet area); a few steps of sampling carry
        // that through: the fp32 module bar.
        CHECK_CLOSE(test::as_tensor(out), test::flat(fx[name + ".out"]), test::kFp32Module);
    }
}
}
