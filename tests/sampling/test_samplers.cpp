#include <cmath>
#include <string>
#include <utility>

#include "sampling_support.hpp"
#include "unclip/sampling/samplers.hpp"

using namespace unclip;
using namespace unclip::sampling;

namespace {

struct Trajectory {
    std::vector<float> x, denoised, final_x;
    std::vector<float> sigmas_seen;
};

Trajectory run_case(const test::Fixture& fx, const std::string& name, Sampler sampler, NoiseSampler* noise) {
    const test::GaussianDenoiser data(test::values(fx["data.mu"]), test::values(fx["data.s"]));
    Trajectory t;
    t.final_x = test::values(fx[name + ".x_init"]);
    SamplerOptions options;
    options.noise = noise;
    options.on_step = [&](const StepInfo& info) {
        t.x.insert(t.x.end(), info.x, info.x + info.numel);
        t.denoised.insert(t.denoised.end(), info.denoised, info.denoised + info.numel);
        t.sigmas_seen.push_back(info.sigma);
        return true;
    };
    sample(sampler, std::cref(data), t.final_x, test::values(fx[name + ".sigmas"]), options);
    return t;
}

}  // namespace

TEST_SUITE("sampling") {

TEST_CASE("Every sampler's trajectory matches k-diffusion / the UniPC reference on the Gaussian denoiser") {
    const test::Fixture fx("sampling/samplers.safetensors");
    const auto cases = fx.config().at("cases");
    for (const auto& c : cases) {
        const std::string name = c.at("name");
        const Sampler sampler = sampler_from_name(c.at("sampler").get<std::string>());
        INFO(name << ": " << c.at("sampler").get<std::string>() << ", " << c.at("scheduler").get<std::string>() << " "
                  << c.at("steps").get<int>() << " steps");
        const auto noise_calls = c.at("noise_calls").get<std::size_t>();
        std::unique_ptr<test::RecordedNoise> noise;
        const std::size_t n = test::values(fx[name + ".x_init"]).size();
        if (noise_calls > 0) noise = std::make_unique<test::RecordedNoise>(test::values(fx[name + ".noise"]), n);
        Trajectory t = run_case(fx, name, sampler, noise.get());
        if (noise) CHECK(noise->calls() == noise_calls);
        CHECK_CLOSE(test::as_tensor(t.final_x), test::flat(fx[name + ".final"]), test::kSamplerTolerance);
        CHECK_CLOSE(test::as_tensor(t.x), test::flat(fx[name + ".x"]), test::kSamplerTolerance);
        CHECK_CLOSE(test::as_tensor(t.denoised), test::flat(fx[name + ".denoised"]), test::kSamplerTolerance);
    }
}

TEST_CASE("UniPC bh1 and bh2 match diffusers' UniPCMultistepScheduler where the two agree") {
    const test::Fixture fx("sampling/samplers.safetensors");
    const test::GaussianDenoiser data(test::values(fx["data.mu"]), test::values(fx["data.s"]));
    const auto config = fx.config();
    for (const auto& c : config.at("diffusers_unipc")) {
        const std::string name = c.at("name");
        INFO(name);
        std::vector<float> x = test::values(fx[name + ".x_init"]);
        sample(sampler_from_name(c.at("sampler").get<std::string>()), std::cref(data), x,
               test::values(fx[name + ".sigmas"]));
        CHECK_CLOSE(test::as_tensor(x), test::flat(fx[name + ".final"]), test::kSamplerTolerance);
    }
}

TEST_CASE("Deterministic samplers converge to the exact probability-flow ODE solution for Gaussian data") {
    const test::Fixture fx("sampling/samplers.safetensors");
    const test::GaussianDenoiser data(test::values(fx["data.mu"]), test::values(fx["data.s"]));
    const std::vector<float> sigmas = test::values(fx["exact.sigmas"]);  // karras, 59 steps down to sigma_min
    // Discretisation error on these 59 Karras steps, measured in float64 with k-diffusion: 1.03e-3
    // (heun, dpmpp_2m), 6.0e-4 (dpm_2); UniPC, of order 3, 3.8e-5. The bounds leave 2x room.
    const std::pair<Sampler, double> bounds[] = {{Sampler::heun, 2e-3},     {Sampler::dpm_2, 2e-3},
                                                 {Sampler::dpmpp_2m, 2e-3}, {Sampler::uni_pc, 1e-4},
                                                 {Sampler::uni_pc_bh2, 1e-4}};
    for (const auto& [sampler, bound] : bounds) {
        INFO(sampler_name(sampler));
        std::vector<float> x = test::values(fx["exact.x_init"]);
        sample(sampler, std::cref(data), x, sigmas);
        CHECK_CLOSE(test::as_tensor(x), test::flat(fx["exact.solution"]), bound);
    }
}

TEST_CASE("ddim is ComfyUI's Euler") {
    const test::Fixture fx("sampling/samplers.safetensors");
    const test::GaussianDenoiser data(test::values(fx["data.mu"]), test::values(fx["data.s"]));
    std::vector<float> a = test::values(fx["exact.x_init"]), b = a;
    sample(Sampler::ddim, std::cref(data), a, test::values(fx["exact.sigmas"]));
    sample(Sampler::euler, std::cref(data), b, test::values(fx["exact.sigmas"]));
    CHECK(a == b);
}

TEST_CASE("A step callback returning false stops the run with Status::cancelled") {
    const test::Fixture fx("sampling/samplers.safetensors");
    const test::GaussianDenoiser data(test::values(fx["data.mu"]), test::values(fx["data.s"]));
    for (Sampler sampler : {Sampler::euler, Sampler::heun, Sampler::dpmpp_sde, Sampler::uni_pc_bh2}) {
        INFO(sampler_name(sampler));
        int model_calls = 0, reports = 0;
        const DenoiseFn counting = [&](const float* x, float sigma, float* out) {
            ++model_calls;
            data(x, sigma, out);
        };
        std::vector<float> x = test::values(fx["exact.x_init"]);
        const std::vector<float> sigmas = test::values(fx["exact.sigmas"]);
        SamplerOptions options;
        options.on_step = [&](const StepInfo& info) {
            CHECK(info.step == reports);
            CHECK(info.steps == static_cast<int>(sigmas.size()) - 1);
            ++reports;
            return info.step < 2;
        };
        CHECK_THROWS_STATUS(sample(sampler, counting, x, sigmas, options), Status::cancelled,
                            "sampling cancelled at step 3 of " + std::to_string(sigmas.size() - 1));
        CHECK(reports == 3);
        CHECK(model_calls <= 6);  // two evaluations per step at most
    }
}

TEST_CASE("The step callback sees each step's starting sigma and a finite prediction") {
    const auto model = ModelSchedule::scaled_linear();
    const std::vector<float> sigmas = ksampler_sigmas(model, Scheduler::karras, Sampler::euler_ancestral, 8);
    const test::GaussianDenoiser data(std::vector<float>(64, 0.25f), std::vector<float>(64, 0.5f));
    std::vector<float> x(64, 3.0f), seen;
    SamplerOptions options;
    options.seed = 9;
    options.on_step = [&](const StepInfo& info) {
        seen.push_back(info.sigma);
        CHECK(info.numel == 64);
        CHECK(std::isfinite(info.denoised[0]));
        return true;
    };
    sample(Sampler::euler_ancestral, std::cref(data), x, sigmas, options);
    CHECK(seen == std::vector<float>(sigmas.begin(), sigmas.end() - 1));
}

TEST_CASE("The default ancestral noise replays ComfyUI's CPU generator: its first draw is the initial noise") {
    TorchNoiseSampler noise(1234);
    std::vector<float> first(100);
    noise.sample(14.6f, 10.0f, first.data(), first.size());
    CHECK(first == TorchGenerator(1234).randn(100));
}

TEST_CASE("Brownian noise has unit variance and correlates overlapping increments like a Brownian motion") {
    const std::size_t n = 20000;
    BrownianNoiseSampler a(77, 0.03f, 14.6f);
    std::vector<float> full(n), half(n);
    a.sample(10.0f, 7.5f, half.data(), n);  // W(7.5) - W(10), scaled by 1/sqrt(2.5)
    a.sample(10.0f, 5.0f, full.data(), n);  // W(5) - W(10), scaled by 1/sqrt(5)
    double var_half = 0, var_full = 0, cov = 0;
    for (std::size_t k = 0; k < n; ++k) {
        var_half += half[k] * half[k];
        var_full += full[k] * full[k];
        cov += half[k] * full[k];
    }
    var_half /= n;
    var_full /= n;
    cov /= n;
    CHECK(var_half == doctest::Approx(1.0).epsilon(0.05));
    CHECK(var_full == doctest::Approx(1.0).epsilon(0.05));
    CHECK(cov / std::sqrt(var_half * var_full) == doctest::Approx(std::sqrt(0.5)).epsilon(0.03));
    // The same seed gives the same increments; the stream is not the initial noise's.
    BrownianNoiseSampler b(77, 0.03f, 14.6f);
    std::vector<float> again(n);
    b.sample(10.0f, 7.5f, again.data(), n);
    CHECK(again == half);
    std::vector<float> initial = TorchGenerator(77).randn(n);
    double corr = 0;
    for (std::size_t k = 0; k < n; ++k) corr += initial[k] * half[k];
    CHECK(std::fabs(corr / n) < 0.05);
}

TEST_CASE("Sampler names round-trip and an unknown name lists the valid ones") {
    for (const char* name : {"euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde",
                             "ddim", "uni_pc", "uni_pc_bh2"})
        CHECK(std::string(sampler_name(sampler_from_name(name))) == name);
    CHECK_THROWS_STATUS(sampler_from_name("lms"), Status::invalid_argument,
                        "unknown sampler 'lms' (valid: euler, euler_ancestral, heun, dpm_2, dpmpp_2m, dpmpp_2m_sde, "
                        "dpmpp_sde, ddim, uni_pc, uni_pc_bh2)");
    CHECK(discards_penultimate_sigma(Sampler::uni_pc_bh2));
    CHECK_FALSE(discards_penultimate_sigma(Sampler::euler));
}

TEST_CASE("Bad sampler inputs are refused with the culprit named") {
    const test::GaussianDenoiser data(std::vector<float>(16, 0.0f), std::vector<float>(16, 1.0f));
    std::vector<float> x(16, 1.0f);
    CHECK_THROWS_STATUS(sample(Sampler::euler, std::cref(data), x, {1.0f}), Status::invalid_argument,
                        "need at least 2 sigmas (got 1)");
    CHECK_THROWS_STATUS(sample(Sampler::euler, std::cref(data), x, {1.0f, std::nanf(""), 0.0f}),
                        Status::invalid_argument, "sigmas[1] is not finite");
    CHECK_THROWS_STATUS(sample(Sampler::euler, std::cref(data), x, {INFINITY, 0.0f}), Status::invalid_argument,
                        "sigmas[0] is not finite");
    CHECK_THROWS_STATUS(sample(Sampler::euler, std::cref(data), x, {2.0f, 0.0f, 1.0f, 0.0f}),
                        Status::invalid_argument, "sigmas[1] = 0 must be > 0");
    SamplerOptions options;
    options.eta = -1;
    CHECK_THROWS_STATUS(sample(Sampler::euler_ancestral, std::cref(data), x, {2.0f, 0.0f}, options),
                        Status::invalid_argument, "eta must be >= 0 (got -1)");
    options.eta = 1;
    options.s_noise = std::nan("");
    CHECK_THROWS_STATUS(sample(Sampler::euler_ancestral, std::cref(data), x, {2.0f, 0.0f}, options),
                        Status::invalid_argument, "s_noise must be finite");
    x[3] = std::nanf("");
    CHECK_THROWS_STATUS(sample(Sampler::euler, std::cref(data), x, {2.0f, 0.0f}), Status::invalid_argument,
                        "x[3] is not finite");
    x[3] = 0;
    CHECK_THROWS_STATUS(sample(Sampler::euler, DenoiseFn(), x, {2.0f, 0.0f}), Status::invalid_argument,
                        "the denoiser callback is empty");
}
}
