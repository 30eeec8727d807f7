#include <cmath>
#include <string>
#include <thread>

#include "sampling_support.hpp"
#include "unclip/sampling/denoiser.hpp"
#include "unclip/sampling/samplers.hpp"

using namespace unclip;
using namespace unclip::sampling;

namespace {

// The stand-in network of tests/golden/sampling.py: v = a(t) x_in + b(t) mu, mu per branch.
ModelFn fake_network(const std::vector<float>& mu_pos, const std::vector<float>& mu_neg) {
    return [mu_pos, mu_neg](const ModelCall& call) {
        const double t = call.timestep;
        const auto a = static_cast<float>(0.3 + 0.2 * std::cos(t / 100.0));
        const auto b = static_cast<float>(0.1 * std::sin(t / 50.0) + 0.05);
        const auto row = static_cast<std::size_t>(call.row_size);
        for (std::int64_t r = 0; r < call.rows; ++r) {
            const std::vector<float>& mu = r < call.positive_rows ? mu_pos : mu_neg;
            for (std::size_t k = 0; k < row; ++k) {
                const std::size_t i = static_cast<std::size_t>(r) * row + k;
                call.output[i] = a * call.input[i] + b * mu[k];
            }
        }
    };
}

std::vector<float> run_ksampler(const test::Fixture& fx, const nlohmann::json& run) {
    const std::string name = run.at("name");
    const auto shape = run.at("shape");
    const auto model = ModelSchedule::scaled_linear();
    DenoiserConfig config;
    config.prediction = Prediction::v;
    config.batch = shape[0].get<std::int64_t>();
    config.row_size = shape[1].get<std::int64_t>() * shape[2].get<std::int64_t>() * shape[3].get<std::int64_t>();
    config.cfg_scale = run.at("cfg").get<double>();
    Denoiser denoiser(model, config, fake_network(test::values(fx[name + ".mu_pos"]), test::values(fx[name + ".mu_neg"])));
    KSamplerParams params;
    params.sampler = sampler_from_name(run.at("sampler").get<std::string>());
    params.scheduler = scheduler_from_name(run.at("scheduler").get<std::string>());
    params.steps = run.at("steps").get<int>();
    params.denoise = run.at("denoise").get<double>();
    params.seed = std::stoull(run.at("seed").get<std::string>());
    return ksample(params, model, std::ref(denoiser), test::values(fx[name + ".latent"]));
}

}  // namespace

TEST_SUITE("sampling") {

TEST_CASE("The v-prediction wrapper feeds c_in * x at the nearest timestep and forms D as ComfyUI") {
    const auto model = ModelSchedule::scaled_linear();
    const std::vector<float> x = {1.0f, -2.0f, 0.5f, 3.0f};
    for (Prediction prediction : {Prediction::v, Prediction::eps}) {
        INFO(prediction_name(prediction));
        ModelCall seen;
        std::vector<float> input;
        Denoiser denoiser(model, {prediction, 1, 4, 1.0}, [&](const ModelCall& call) {
            seen = call;
            input.assign(call.input, call.input + call.rows * call.row_size);
            for (int i = 0; i < 4; ++i) call.output[i] = 0.1f * static_cast<float>(i + 1);
        });
        const float sigma = 2.5f;
        std::vector<float> d(4);
        denoiser(x.data(), sigma, d.data());
        CHECK(seen.rows == 1);
        CHECK(seen.positive_rows == 1);
        CHECK(seen.timestep == static_cast<float>(model.timestep(sigma)));
        CHECK(seen.timestep == std::round(seen.timestep));
        const double s = std::sqrt(1.0 + double(sigma) * sigma);
        for (int i = 0; i < 4; ++i) {
            CHECK(input[static_cast<std::size_t>(i)] == doctest::Approx(x[static_cast<std::size_t>(i)] / s).epsilon(1e-6));
            const double out = 0.1 * (i + 1);
            const double expected = prediction == Prediction::v
                                        ? x[static_cast<std::size_t>(i)] / (s * s) - out * sigma / s  // c_skip, c_out
                                        : x[static_cast<std::size_t>(i)] - out * sigma;
            CHECK(d[static_cast<std::size_t>(i)] == doctest::Approx(expected).epsilon(1e-6));
        }
    }
}

TEST_CASE("CFG evaluates positive and negative rows in one batch and mixes them") {
    const auto model = ModelSchedule::scaled_linear();
    const std::int64_t batch = 2, row = 3;
    std::vector<ModelCall> calls;
    const auto network = [&](const ModelCall& call) {
        calls.push_back(call);
        for (std::int64_t r = 0; r < call.rows; ++r)
            for (std::int64_t k = 0; k < call.row_size; ++k)
                call.output[r * call.row_size + k] = r < call.positive_rows ? 1.0f : -1.0f;
    };
    const std::vector<float> x(static_cast<std::size_t>(batch * row), 0.0f);
    std::vector<float> d(x.size());
    Denoiser guided(model, {Prediction::eps, batch, row, 7.5}, network);
    CHECK(guided.uses_negative());
    guided(x.data(), 1.0f, d.data());
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].rows == 2 * batch);
    CHECK(calls[0].positive_rows == batch);
    // eps: D = x - out * sigma -> positive -1, negative +1; D = neg + 7.5 (pos - neg) = 1 - 15.
    for (float v : d) CHECK(v == doctest::Approx(-14.0));

    calls.clear();
    Denoiser unguided(model, {Prediction::eps, batch, row, 1.0}, network);
    CHECK_FALSE(unguided.uses_negative());
    unguided(x.data(), 1.0f, d.data());
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].rows == batch);
    for (float v : d) CHECK(v == doctest::Approx(-1.0));
}

TEST_CASE("Whole KSampler runs reproduce ComfyUI's composition: seed, schedule, noise scaling, CFG, sampler") {
    const test::Fixture fx("sampling/ksampler.safetensors");
    const auto config = fx.config();
    for (const auto& run : config.at("runs")) {
        INFO(run.dump());
        std::vector<float> out = run_ksampler(fx, run);
        CHECK_CLOSE(test::as_tensor(out), test::flat(fx[run.at("name").get<std::string>() + ".out"]),
                    test::kSamplerTolerance);
    }
}

TEST_CASE("Sampling gives bit-identical results whether runs are serial or on concurrent threads") {
    const test::Fixture fx("sampling/ksampler.safetensors");
    const auto runs = fx.config().at("runs");
    std::vector<std::vector<float>> serial, parallel(runs.size());
    for (const auto& run : runs) serial.push_back(run_ksampler(fx, run));
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < runs.size(); ++i)
        threads.emplace_back([&, i] { parallel[i] = run_ksampler(fx, runs[i]); });
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < runs.size(); ++i) CHECK(serial[i] == parallel[i]);
}

TEST_CASE("Bad denoiser settings and inputs are refused with the culprit named") {
    const auto model = ModelSchedule::scaled_linear();
    const ModelFn network = [](const ModelCall&) {};
    CHECK_THROWS_STATUS(Denoiser(model, {Prediction::v, 1, 4, std::nan("")}, network), Status::invalid_argument,
                        "cfg_scale must be finite");
    CHECK_THROWS_STATUS(Denoiser(model, {Prediction::v, 1, 4, 101.0}, network), Status::invalid_argument,
                        "cfg_scale must be in [0, 100] (got 101)");
    CHECK_THROWS_STATUS(Denoiser(model, {Prediction::v, 0, 4, 7.0}, network), Status::invalid_argument,
                        "batch must be >= 1 (got 0)");
    CHECK_THROWS_STATUS(Denoiser(model, {Prediction::v, 1, 4, 7.0}, ModelFn()), Status::invalid_argument,
                        "the network callback is empty");
    CHECK_THROWS_STATUS(prediction_from_name("x0"), Status::invalid_argument, "(valid: eps, v)");
    Denoiser denoiser(model, {Prediction::v, 1, 4, 7.0}, network);
    std::vector<float> x(4, 0.0f), d(4);
    CHECK_THROWS_STATUS(denoiser(x.data(), 0.0f, d.data()), Status::invalid_argument, "sigma must be positive");
    CHECK_THROWS_STATUS(denoiser(x.data(), INFINITY, d.data()), Status::invalid_argument, "sigma must be positive");

    KSamplerParams params;
    const DenoiseFn identity = [](const float* in, float, float* out) { std::copy(in, in + 4, out); };
    std::vector<float> latent(4, 0.0f);
    latent[2] = INFINITY;
    CHECK_THROWS_STATUS(ksample(params, model, identity, latent), Status::invalid_argument, "latent[2] is not finite");
    latent[2] = 0.0f;
    params.steps = 0;
    CHECK_THROWS_STATUS(ksample(params, model, identity, latent), Status::invalid_argument, "steps must be in");
    params.steps = 20;
    params.denoise = 0.0;
    CHECK_THROWS_STATUS(ksample(params, model, identity, latent), Status::invalid_argument, "denoise must be in (0, 1]");
}
}
