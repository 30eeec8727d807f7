#include <cmath>
#include <string>

#include "sampling_support.hpp"
#include "unclip/sampling/samplers.hpp"
#include "unclip/sampling/schedules.hpp"

using namespace unclip;
using namespace unclip::sampling;

namespace {
// Largest |a - e| / |e| over the non-zero expected values; every schedule value matters alone.
double max_relative_error(const std::vector<float>& actual, const std::vector<float>& expected) {
    double worst = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const double e = expected[i], a = actual[i];
        worst = std::max(worst, e == 0 ? std::fabs(a) : std::fabs(a - e) / std::fabs(e));
    }
    return worst;
}
}  // namespace

TEST_SUITE("sampling") {

TEST_CASE("The model schedule matches ComfyUI's ModelSamplingDiscrete for SD 2.x") {
    const test::Fixture fx("sampling/schedules.safetensors");
    const auto model = ModelSchedule::scaled_linear();
    std::vector<float> sigmas = model.sigmas(), log_sigmas = model.log_sigmas();
    CHECK_CLOSE(test::as_tensor(sigmas), fx["model.sigmas"], 1e-7);
    CHECK_CLOSE(test::as_tensor(log_sigmas), fx["model.log_sigmas"], 1e-7);
    CHECK(model.sigma_min() == doctest::Approx(0.0291672).epsilon(1e-6));
    CHECK(model.sigma_max() == doctest::Approx(14.6146412).epsilon(1e-6));
    CHECK(model.timesteps() == 1000);
}

TEST_CASE("sigma(t) interpolates log-sigma between timesteps and clamps t to [0, 999]") {
    const test::Fixture fx("sampling/schedules.safetensors");
    const auto model = ModelSchedule::scaled_linear();
    const std::vector<float> t = test::values(fx["model.sigma_at.t"]);
    std::vector<float> got;
    for (float v : t) got.push_back(model.sigma(v));
    CHECK_CLOSE(test::as_tensor(got), fx["model.sigma_at.sigma"], test::kScheduleTolerance);
}

TEST_CASE("timestep(sigma) is the nearest discrete timestep in log space") {
    const test::Fixture fx("sampling/schedules.safetensors");
    const auto model = ModelSchedule::scaled_linear();
    const std::vector<float> probe = test::values(fx["model.timestep.sigma"]);
    const std::vector<float> expected = test::values(fx["model.timestep.t"]);
    int mismatches = 0;
    for (std::size_t i = 0; i < probe.size(); ++i)
        if (model.timestep(probe[i]) != static_cast<int>(expected[i])) ++mismatches;
    CHECK(mismatches == 0);
    // Karras, 10 steps -> UNet timesteps 999, 916, 815, 687, 523, 327, 146, 41, 7, 0 (reference doc).
    const std::vector<float> karras = compute_sigmas(model, Scheduler::karras, 10);
    const int expected_t[] = {999, 916, 815, 687, 523, 327, 146, 41, 7, 0};
    for (int i = 0; i < 10; ++i) CHECK(model.timestep(karras[static_cast<std::size_t>(i)]) == expected_t[i]);
}

TEST_CASE("Every scheduler matches ComfyUI's sigma list for 1 to 1000 steps") {
    const test::Fixture fx("sampling/schedules.safetensors");
    const auto config = fx.config();
    const auto model = ModelSchedule::scaled_linear();
    for (const auto& name : config.at("schedulers")) {
        const Scheduler scheduler = scheduler_from_name(name.get<std::string>());
        for (const auto& steps : config.at("steps")) {
            INFO(name.get<std::string>() << ", " << steps.get<int>() << " steps");
            std::vector<float> got = compute_sigmas(model, scheduler, steps.get<int>());
            const Tensor expected = fx["sigmas." + name.get<std::string>() + "." + std::to_string(steps.get<int>())];
            REQUIRE(got.size() == static_cast<std::size_t>(expected.numel()));
            CHECK(got.back() == 0.0f);
            CHECK_CLOSE(test::as_tensor(got), expected, test::kScheduleTolerance);
            CHECK(max_relative_error(got, test::values(expected)) <= 4 * test::kScheduleTolerance);
        }
    }
}

TEST_CASE("KSampler drops the penultimate sigma for dpm_2 and UniPC and truncates for denoise < 1") {
    const test::Fixture fx("sampling/schedules.safetensors");
    const auto model = ModelSchedule::scaled_linear();
    const auto cases = fx.config().at("ksampler");
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        INFO(c.dump());
        std::vector<float> got = ksampler_sigmas(model, scheduler_from_name(c.at("scheduler").get<std::string>()),
                                                 sampler_from_name(c.at("sampler").get<std::string>()),
                                                 c.at("steps").get<int>(), c.at("denoise").get<double>());
        const Tensor expected = fx["ksampler." + std::to_string(i)];
        REQUIRE(got.size() == static_cast<std::size_t>(expected.numel()));
        CHECK_CLOSE(test::as_tensor(got), expected, test::kScheduleTolerance);
    }
    // normal + uni_pc over 10 steps is sgm_uniform over 10 steps (reference doc, 6.4).
    std::vector<float> unipc = ksampler_sigmas(model, Scheduler::normal, Sampler::uni_pc, 10);
    std::vector<float> sgm = compute_sigmas(model, Scheduler::sgm_uniform, 10);
    CHECK_CLOSE(test::as_tensor(unipc), test::as_tensor(sgm), test::kScheduleTolerance);
}

TEST_CASE("Scheduler names round-trip and an unknown name lists the valid ones") {
    for (const char* name : {"normal", "karras", "exponential", "simple", "sgm_uniform", "ddim_uniform"})
        CHECK(std::string(scheduler_name(scheduler_from_name(name))) == name);
    CHECK_THROWS_STATUS(scheduler_from_name("beta"), Status::invalid_argument,
                        "unknown scheduler 'beta' (valid: normal, karras, exponential, simple, sgm_uniform, "
                        "ddim_uniform)");
}

TEST_CASE("Bad steps and denoise values are refused with the culprit named") {
    const auto model = ModelSchedule::scaled_linear();
    CHECK_THROWS_STATUS(compute_sigmas(model, Scheduler::normal, 0), Status::invalid_argument,
                        "steps must be in [1, 1000] (got 0)");
    CHECK_THROWS_STATUS(compute_sigmas(model, Scheduler::karras, 10000), Status::invalid_argument,
                        "steps must be in [1, 1000] (got 10000)");
    CHECK_THROWS_STATUS(ksampler_sigmas(model, Scheduler::normal, Sampler::euler, 0), Status::invalid_argument,
                        "steps must be in [1, 1000] (got 0)");
    CHECK_THROWS_STATUS(ksampler_sigmas(model, Scheduler::normal, Sampler::euler, 10000), Status::invalid_argument,
                        "steps must be in [1, 1000] (got 10000)");
    for (double denoise : {0.0, -0.5, 1.5}) {
        INFO("denoise " << denoise);
        CHECK_THROWS_STATUS(ksampler_sigmas(model, Scheduler::normal, Sampler::euler, 20, denoise),
                            Status::invalid_argument, "denoise must be in (0, 1]");
    }
    CHECK_THROWS_STATUS(ksampler_sigmas(model, Scheduler::normal, Sampler::euler, 20, std::nan("")),
                        Status::invalid_argument, "denoise must be finite");
    CHECK_THROWS_STATUS(ksampler_sigmas(model, Scheduler::normal, Sampler::euler, 20, INFINITY),
                        Status::invalid_argument, "denoise must be finite");
    CHECK_THROWS_STATUS(ksampler_sigmas(model, Scheduler::normal, Sampler::euler, 1000, 1e-6),
                        Status::invalid_argument, "schedule (limit 100000)");
    CHECK_THROWS_STATUS(ModelSchedule::scaled_linear(0.012, 0.00085), Status::invalid_argument,
                        "0 < beta_start < beta_end < 1");
    CHECK_THROWS_STATUS(model.timestep(std::nanf("")), Status::invalid_argument, "sigma must be positive and finite");
}
}
