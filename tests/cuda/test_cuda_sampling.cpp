// The sampling loop on device latents: each LatentUpdate kernel against the CPU's loop, every
// sampler run through CudaLatentOps against the same run on the host, and generate() on the GPU
// (inpainting, an ancestral sampler, previews) against the CPU's pixels.
#include <string>

#include "cuda_test_support.hpp"
#include "pipeline/gpu_latent_ops.hpp"
#include "sampling/samplers_detail.hpp"
#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;
using backend::LatentUpdate;
using backend::LatentUpdateArgs;
using cuda_test::DeviceFloats;
namespace sd = unclip::sampling::detail;

namespace {

// Inputs for every kind: five random vectors of 2n (cfg_denoised reads 2n of its second), the
// second in [0, 1] (hold_* read it as a mask weight).
struct UpdateCase {
    std::string name;
    LatentUpdateArgs args;  // pointers: indices into the inputs (1-based), 0 = none
};

std::vector<UpdateCase> update_cases(std::int64_t n) {
    std::vector<UpdateCase> cases;
    const auto add = [&](std::string name, LatentUpdate kind, int inputs, std::initializer_list<float> c) {
        UpdateCase u;
        u.name = std::move(name);
        u.args.kind = kind;
        u.args.n = n;
        for (int i = 0; i < inputs; ++i) u.args.in[i] = reinterpret_cast<const float*>(static_cast<std::intptr_t>(i + 1));
        std::copy(c.begin(), c.end(), u.args.c);
        cases.push_back(u);
        return &cases.back().args;
    };
    add("copy", LatentUpdate::copy, 1, {});
    add("scale", LatentUpdate::scale, 1, {1.7f});
    add("divide", LatentUpdate::divide, 1, {3.1f});
    add("difference_over", LatentUpdate::difference_over, 2, {-0.37f});
    add("euler", LatentUpdate::euler, 3, {2.5f, -0.3f});
    add("euler_noisy", LatentUpdate::euler_noisy, 3, {2.5f, -0.3f, 1.0f, 0.4f});
    add("heun", LatentUpdate::heun, 4, {2.5f, 1.2f, -1.3f});
    add("combine", LatentUpdate::combine, 2, {0.8f, -0.45f});
    add("combine_nested", LatentUpdate::combine_nested, 3, {0.8f, -0.45f, 1.7f, -0.7f});
    add("add_scaled_difference", LatentUpdate::add_scaled_difference, 3, {0.33f});
    add("data_prediction", LatentUpdate::data_prediction, 3, {0.9f, 2.0f, 0.44f});
    for (int count = 0; count <= 2; ++count) {
        LatentUpdateArgs* a = add("uni_pc predictor " + std::to_string(count), LatentUpdate::uni_pc, 3, {0.7f, 0.5f, -0.25f});
        a->count = count;
        a = add("uni_pc corrector " + std::to_string(count), LatentUpdate::uni_pc, 5, {0.7f, 0.5f, -0.25f, 0.6f});
        a->count = count;
    }
    LatentUpdateArgs* a = add("cfg_input", LatentUpdate::cfg_input, 1, {1.9f});
    a->n = 2 * n;
    a->period = n;
    for (const bool v : {false, true})
        for (const bool guided : {false, true}) {
            a = add(std::string("cfg_denoised ") + (v ? "v" : "eps") + (guided ? " guided" : ""), LatentUpdate::cfg_denoised,
                    2, {0.2f, 2.0f, 2.236f, 7.0f});
            a->period = n;
            a->v_prediction = v;
            a->guided = guided;
        }
    add("hold_sample", LatentUpdate::hold_sample, 4, {3.0f});
    add("hold_prediction", LatentUpdate::hold_prediction, 3, {});
    return cases;
}

// D(x, sigma) of Gaussian data with mean mu (per value) and variance s2, queued through ops on its memory.
sampling::DenoiseFn gaussian_denoiser(sd::LatentOps& ops, const float* mu, std::size_t n) {
    return [&ops, mu, n](const float* x, float sigma, float* out) {
        const float s2 = 0.64f, keep = s2 / (s2 + sigma * sigma);
        ops.apply(LatentUpdate::combine, out, n, {x, mu}, {keep, 1.0f - keep});
    };
}

struct Run {
    std::vector<float> x, denoised;
};

Run run_sampler(sd::LatentOps& ops, const CudaBackend::Context* ctx, sampling::Sampler sampler,
                const std::vector<float>& x0, const std::vector<float>& mu, bool report) {
    const std::size_t n = x0.size();
    float* x = ops.buffer(n);
    float* mean = ops.buffer(n);
    ops.upload(x0.data(), x, n);
    ops.upload(mu.data(), mean, n);
    const std::vector<float> sigmas = sampling::ksampler_sigmas(sampling::ModelSchedule::scaled_linear(),
                                                                sampling::Scheduler::karras, sampler, 7);
    Run run;
    sampling::SamplerOptions options;
    options.seed = 17;
    options.on_step = [&](const sampling::StepInfo& info) {
        if (report) run.denoised.insert(run.denoised.end(), info.denoised, info.denoised + info.numel);
        return true;
    };
    sd::sample_with(ops, sampler, gaussian_denoiser(ops, mean, n), x, n, sigmas, options, report);
    run.x.resize(n);
    if (ctx) {
        CudaBackend::download(*ctx, x, run.x.data(), static_cast<std::int64_t>(n));
    } else {
        std::copy(x, x + n, run.x.begin());
    }
    return run;
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("every latent update on the GPU matches the CPU's loop, and writes each value once") {
    CudaBackend::Context ctx;
    const std::int64_t n = 10007;
    std::vector<std::vector<float>> inputs;
    for (std::uint32_t i = 0; i < 5; ++i)
        inputs.push_back(cuda_test::random_floats(static_cast<std::size_t>(2 * n), 50 + i, i == 1 ? 0.0f : -2.0f, 2.0f));
    std::vector<std::unique_ptr<DeviceFloats>> device_inputs;
    for (const auto& v : inputs) device_inputs.push_back(std::make_unique<DeviceFloats>(ctx, v));
    for (const UpdateCase& c : update_cases(n)) {
        INFO(c.name);
        LatentUpdateArgs host = c.args, device = c.args;
        for (std::size_t i = 0; i < std::size(host.in); ++i) {
            const auto index = reinterpret_cast<std::intptr_t>(c.args.in[i]);
            host.in[i] = index ? inputs[static_cast<std::size_t>(index - 1)].data() : nullptr;
            device.in[i] = index ? device_inputs[static_cast<std::size_t>(index - 1)]->get() : nullptr;
        }
        std::vector<float> expected(static_cast<std::size_t>(c.args.n));
        host.out = expected.data();
        sd::update_on_host(host);
        const DeviceFloats out(c.args.n);  // poisoned
        device.out = out.get();
        CudaBackend::latent_update(ctx, device);
        const std::vector<float> got = out.read(ctx);
        REQUIRE(cuda_test::all_finite(got));
        // No fused multiply-adds on the GPU; the host compiler may fuse some: an ulp or two.
        CHECK(cuda_test::relative_l2(got, expected) < 1e-6);
    }
    LatentUpdateArgs unknown;
    unknown.kind = static_cast<LatentUpdate>(99);
    unknown.n = 4;
    CHECK_THROWS_STATUS(CudaBackend::latent_update(ctx, unknown), Status::invalid_argument, "unknown kind 99");
}

TEST_CASE("every sampler on device latents runs as it does on the host") {
    CudaBackend::Context ctx;
    const std::size_t n = 4 * 6 * 8 * 2;
    const std::vector<float> x0 = cuda_test::random_floats(n, 60, -14.0f, 14.0f);
    const std::vector<float> mu = cuda_test::random_floats(n, 61);
    for (const auto sampler : {sampling::Sampler::euler, sampling::Sampler::euler_ancestral, sampling::Sampler::heun,
                               sampling::Sampler::dpm_2, sampling::Sampler::dpmpp_2m, sampling::Sampler::dpmpp_2m_sde,
                               sampling::Sampler::dpmpp_sde, sampling::Sampler::ddim, sampling::Sampler::uni_pc,
                               sampling::Sampler::uni_pc_bh2}) {
        INFO(std::string(sampling::sampler_name(sampler)));
        sd::HostLatentOps host_ops;
        const Run host = run_sampler(host_ops, nullptr, sampler, x0, mu, true);
        const DeviceFloats pool(static_cast<std::int64_t>(sd::kMaxLatentBuffers * n));
        pipeline::CudaLatentOps ops(ctx, pool.get(), sd::kMaxLatentBuffers * n);
        const Run device = run_sampler(ops, &ctx, sampler, x0, mu, true);
        REQUIRE(cuda_test::all_finite(device.x));
        CHECK(cuda_test::relative_l2(device.x, host.x) < 1e-5);
        CHECK(cuda_test::relative_l2(device.denoised, host.denoised) < 1e-5);
        // Without the latents reported, nothing comes back between steps, and the result is the same.
        pipeline::CudaLatentOps quiet_ops(ctx, pool.get(), sd::kMaxLatentBuffers * n);
        const Run quiet = run_sampler(quiet_ops, &ctx, sampler, x0, mu, false);
        CHECK(quiet.x == device.x);
    }
    // The reserved block is a hard limit.
    const DeviceFloats small(8);
    pipeline::CudaLatentOps ops(ctx, small.get(), 8);
    CHECK(ops.buffer(8) == small.get());
    CHECK_THROWS_STATUS(ops.buffer(1), Status::internal, "does not fit");
}

TEST_CASE("end to end on the GPU: inpainting with an ancestral sampler, with and without previews, matches the CPU") {
    const auto generate = [](ComputeDevice device, bool preview) {
        PipelineOptions o;
        o.model_path = test::tiny_model_path();
        o.allow_reduced = true;
        o.threads = 2;
        o.device = device;
        Pipeline pipeline(o);
        GenerateParams p;
        p.steps = 4;
        p.seed = 8;
        p.prompt = "a harbour";
        p.sampler = "euler_ancestral";
        p.cfg_scale = 5.0f;
        p.denoise = 0.8f;
        Image init;
        init.width = 48;
        init.height = 40;
        init.channels = 3;
        init.pixels.resize(48 * 40 * 3);
        for (std::size_t i = 0; i < init.pixels.size(); ++i) init.pixels[i] = static_cast<std::uint8_t>((i * 53) % 241);
        Image mask;
        mask.width = 48;
        mask.height = 40;
        mask.channels = 1;
        mask.pixels.resize(48 * 40);
        for (std::size_t i = 0; i < mask.pixels.size(); ++i) mask.pixels[i] = (i % 48) < 24 ? 255 : 0;
        p.init_image = init;
        p.mask = mask;
        p.preview = preview;
        int previews = 0;
        p.on_progress = [&](const Progress& progress) {
            if (progress.preview) ++previews;
            return true;
        };
        std::vector<Image> images = pipeline.generate(p);
        CHECK(previews == (preview ? p.steps : 0));
        return images;
    };
    const auto cpu = generate(ComputeDevice::cpu, false);
    const auto gpu = generate(ComputeDevice::cuda, false);
    const auto gpu_previewed = generate(ComputeDevice::cuda, true);
    REQUIRE(gpu.size() == cpu.size());
    const double difference = cuda_test::mean_abs_pixel_difference(gpu[0], cpu[0]);
    MESSAGE("mean |GPU - CPU| pixel difference, inpainting: " << difference << " / 255");
    CHECK(difference < 3.0);
    CHECK(gpu_previewed[0].pixels == gpu[0].pixels);
    // The same loop with the sampler's arithmetic on the host (the latents down and up at every
    // step): the same formulas, so the pixels agree up to the host compiler's fused multiply-adds.
    std::vector<Image> host_sampled;
    {
        const cuda_test::ScopedEnvironment off("UNCLIP_CUDA_DEVICE_SAMPLING", "0");
        host_sampled = generate(ComputeDevice::cuda, true);
    }
    const double host_difference = cuda_test::mean_abs_pixel_difference(gpu[0], host_sampled[0]);
    MESSAGE("mean |device loop - host loop| pixel difference: " << host_difference << " / 255");
    CHECK(host_difference < 0.5);
}

}  // TEST_SUITE
