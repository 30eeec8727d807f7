// The sampler loops reach their latents only through LatentOps: run over an ops whose memory they
// must treat as foreign (as they must a GPU's), they give sample()'s bits, and every pointer they
// hand out or pass on is one of that ops' buffers.
#include <algorithm>
#include <string>
#include <utility>

#include "sampling/denoiser_detail.hpp"
#include "sampling/latent_ops.hpp"
#include "sampling/samplers_detail.hpp"
#include "sampling_support.hpp"

using namespace unclip;
using namespace unclip::sampling;
namespace sd = unclip::sampling::detail;

namespace {

// Host memory that the test treats as another device's: every pointer an update names, and every
// pointer the denoiser gets, must lie in one of its buffers; host_view copies out as a download.
class ForeignLatentOps final : public sd::LatentOps {
public:
    float* buffer(std::size_t n) override {
        REQUIRE(buffers_.size() < sd::kMaxLatentBuffers);
        return buffers_.emplace_back(n, std::nanf("")).data();  // poisoned: a read before a write shows
    }
    void update(const backend::LatentUpdateArgs& args) override {
        require_own(args.out, args.n);
        for (std::size_t i = 0; i < std::size(args.in); ++i)
            if (args.in[i] != nullptr) require_own(args.in[i], input_size(args, i));
        ++updates;
        sd::update_on_host(args);
    }
    void upload(const float* host, float* dst, std::size_t n) override {
        require_own(dst, static_cast<std::int64_t>(n));
        std::copy(host, host + n, dst);
        ++uploads;
    }
    const float* host_view(const float* src, std::size_t n, std::vector<float>& staging) override {
        require_own(src, static_cast<std::int64_t>(n));
        staging.assign(src, src + n);
        return staging.data();
    }
    void step_queued() override { ++steps_queued; }

    void require_own(const float* p, std::int64_t n) const {
        const bool inside = std::any_of(buffers_.begin(), buffers_.end(), [&](const std::vector<float>& b) {
            return p >= b.data() && p + n <= b.data() + b.size();
        });
        REQUIRE_MESSAGE(inside, "a pointer outside the ops' buffers");
    }
    std::size_t buffers() const noexcept { return buffers_.size(); }
    static std::int64_t input_size(const backend::LatentUpdateArgs& args, std::size_t i) {
        if (args.kind == backend::LatentUpdate::cfg_input) return args.period;
        if (args.kind == backend::LatentUpdate::cfg_denoised && i == 1) return args.guided ? 2 * args.n : args.n;
        return args.n;
    }

    int updates = 0, uploads = 0, steps_queued = 0;

private:
    std::deque<std::vector<float>> buffers_;
};

struct Trajectory {
    std::vector<float> final_x, denoised;
    int steps = 0;
};

}  // namespace

TEST_SUITE("sampling") {

TEST_CASE("Every sampler runs on latents in foreign memory through LatentOps with sample()'s bits") {
    const test::Fixture fx("sampling/samplers.safetensors");
    const test::GaussianDenoiser data(test::values(fx["data.mu"]), test::values(fx["data.s"]));
    const std::vector<float> x_init = test::values(fx["exact.x_init"]);
    const std::size_t n = x_init.size();
    const std::vector<float> sigmas = ksampler_sigmas(ModelSchedule::scaled_linear(), Scheduler::karras,
                                                      Sampler::euler, 6);
    const Sampler samplers[] = {Sampler::euler,        Sampler::euler_ancestral, Sampler::heun,
                                Sampler::dpm_2,        Sampler::dpmpp_2m,        Sampler::dpmpp_2m_sde,
                                Sampler::dpmpp_sde,    Sampler::ddim,            Sampler::uni_pc,
                                Sampler::uni_pc_bh2};
    for (const Sampler sampler : samplers) {
        INFO(std::string(sampler_name(sampler)));
        const auto record = [&](Trajectory& t) {
            SamplerOptions options;
            options.seed = 11;
            options.on_step = [&t](const StepInfo& info) {
                t.denoised.insert(t.denoised.end(), info.denoised, info.denoised + info.numel);
                ++t.steps;
                return true;
            };
            return options;
        };
        Trajectory host;
        host.final_x = x_init;
        sample(sampler, std::cref(data), host.final_x, sigmas, record(host));

        ForeignLatentOps ops;
        Trajectory foreign;
        float* x = ops.buffer(n);
        ops.upload(x_init.data(), x, n);
        const auto denoise_in = [&](const ForeignLatentOps& memory) -> DenoiseFn {
            return [&](const float* in, float sigma, float* out) {
                memory.require_own(in, static_cast<std::int64_t>(n));
                memory.require_own(out, static_cast<std::int64_t>(n));
                data(in, sigma, out);
            };
        };
        sd::sample_with(ops, sampler, denoise_in(ops), x, n, sigmas, record(foreign));
        foreign.final_x.assign(x, x + n);
        CHECK(foreign.final_x == host.final_x);
        CHECK(foreign.denoised == host.denoised);
        CHECK(foreign.steps == host.steps);
        CHECK(ops.steps_queued >= host.steps);
        CHECK(ops.buffers() <= sd::kMaxLatentBuffers);
        MESSAGE(std::string(sampler_name(sampler)) << ": " << ops.buffers() << " buffers, " << ops.updates << " updates");

        // Without report_latents the callback sees the step but no values (nothing is downloaded).
        ForeignLatentOps quiet_ops;
        float* y = quiet_ops.buffer(n);
        quiet_ops.upload(x_init.data(), y, n);
        int reported = 0;
        SamplerOptions quiet;
        quiet.seed = 11;
        quiet.on_step = [&](const StepInfo& info) {
            CHECK(info.x == nullptr);
            CHECK(info.denoised == nullptr);
            ++reported;
            return true;
        };
        sd::sample_with(quiet_ops, sampler, denoise_in(quiet_ops), y, n, sigmas, quiet, false);
        CHECK(reported == host.steps);
        CHECK(std::vector<float>(y, y + n) == host.final_x);
    }
}

TEST_CASE("The CFG denoiser on foreign memory gives Denoiser's bits, with and without guidance, v and eps") {
    const std::int64_t batch = 2, row_size = 12, n = batch * row_size;
    std::vector<float> x(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = 0.37f * static_cast<float>(i % 7) - 1.1f;
    // A network whose output depends on the row, the value and the timestep.
    const auto network_on = [&](const ModelCall& call) {
        for (std::int64_t i = 0; i < call.rows * call.row_size; ++i)
            call.output[i] = call.input[i] * 0.5f + static_cast<float>(i / call.row_size) * 0.25f + call.timestep * 1e-3f;
    };
    for (const auto& [prediction, cfg] : {std::pair{Prediction::v, 7.0}, std::pair{Prediction::eps, 7.0},
                                          std::pair{Prediction::v, 1.0}}) {
        INFO(prediction_name(prediction) << ", cfg " << cfg);
        const DenoiserConfig config{prediction, batch, row_size, cfg};
        std::vector<float> expected(x.size());
        Denoiser(ModelSchedule::scaled_linear(), config, network_on)(x.data(), 3.5f, expected.data());

        ForeignLatentOps ops;
        const std::int64_t rows = cfg == 1.0 ? batch : 2 * batch;
        float* input = ops.buffer(static_cast<std::size_t>(rows * row_size));
        float* output = ops.buffer(static_cast<std::size_t>(rows * row_size));
        float* device_x = ops.buffer(x.size());
        float* denoised = ops.buffer(x.size());
        ops.upload(x.data(), device_x, x.size());
        const ModelFn network = [&](const ModelCall& call) {
            CHECK(call.input == input);
            CHECK(call.output == output);
            CHECK(call.rows == rows);
            network_on(call);
        };
        sd::guided_denoise(ops, ModelSchedule::scaled_linear(), config, network, input, output, device_x, 3.5f,
                               denoised);
        CHECK(std::vector<float>(denoised, denoised + n) == expected);
        CHECK_THROWS_STATUS(sd::guided_denoise(ops, ModelSchedule::scaled_linear(), config, network, input, output,
                                                   device_x, std::nanf(""), denoised),
                            Status::invalid_argument, "sigma must be positive and finite");
    }
}

TEST_CASE("HostLatentOps refuses more buffers than a run may take") {
    sd::HostLatentOps ops;
    for (std::size_t i = 0; i < sd::kMaxLatentBuffers; ++i) CHECK(ops.buffer(4) != nullptr);
    CHECK_THROWS_STATUS(ops.buffer(4), Status::internal, "more than 16 latent buffers");
}

}  // TEST_SUITE
