#include <cstring>
#include <string>

#include "sampling_support.hpp"
#include "unclip/sampling/rng.hpp"

using namespace unclip;
using sampling::RandnKernel;
using sampling::TorchGenerator;

TEST_SUITE("sampling") {

TEST_CASE("torch.randn is reproduced bit for bit for every seed, size and CPU kernel in the fixture") {
    const test::Fixture fx("sampling/rng.safetensors");
    const auto config = fx.config();
    for (const char* kernel_name : {"avx2", "generic"}) {
        const RandnKernel kernel = sampling::randn_kernel_from_name(kernel_name);
        for (std::size_t i = 0; i < config.at("cases").size(); ++i) {
            const auto& c = config.at("cases")[i];
            const std::uint64_t seed = std::stoull(c.at("seed").get<std::string>());
            INFO("kernel " << kernel_name << ", seed " << seed << ", sizes " << c.at("sizes").dump());
            TorchGenerator generator(seed, kernel);
            std::vector<float> got;
            for (const auto& size : c.at("sizes")) {
                const std::vector<float> part = generator.randn(size.get<std::size_t>());
                got.insert(got.end(), part.begin(), part.end());
            }
            const std::vector<float> expected = test::values(fx[std::string(kernel_name) + "." + std::to_string(i)]);
            REQUIRE(got.size() == expected.size());
            std::size_t mismatches = 0, first = got.size();
            for (std::size_t k = 0; k < got.size(); ++k)
                if (std::memcmp(&got[k], &expected[k], sizeof(float)) != 0) {
                    ++mismatches;
                    first = std::min(first, k);
                }
            INFO("first mismatch at " << first);
            CHECK(mismatches == 0);
        }
    }
}

TEST_CASE("Seeds map as torch.manual_seed maps them: two's complement, low 32 bits") {
    // torch.manual_seed(-10) is the ComfyUI unCLIP noise seed for KSampler seed 0.
    const auto minus_ten = static_cast<std::uint64_t>(std::int64_t{-10});
    TorchGenerator a(minus_ten), b(0xFFFFFFF6u), c((std::uint64_t{7} << 32) | 0xFFFFFFF6u);
    CHECK(a.randn(40) == b.randn(40));
    CHECK(TorchGenerator(minus_ten).randn(40) == c.randn(40));
    CHECK(a.initial_seed() == minus_ten);
    // The first mt19937 output for seed 0 (std::mt19937 and ATen agree).
    CHECK(TorchGenerator(0).random() == 2357136044u);
}

TEST_CASE("Scalar draws cache the second Box-Muller value in the generator, as torch does") {
    TorchGenerator pair(5), singles(5);
    const std::vector<float> two = pair.randn(2);
    const float first = singles.randn(1)[0];
    const float second = singles.randn(1)[0];
    CHECK(first == two[0]);
    CHECK(second == two[1]);
    // manual_seed forgets the cached value.
    TorchGenerator reseeded(5);
    reseeded.randn(1);
    reseeded.manual_seed(5);
    CHECK(reseeded.randn(1)[0] == first);
}

TEST_CASE("The reference document's RNG vectors hold (PyTorch's printed values, 4 decimals)") {
    const std::vector<float> scalar = TorchGenerator(0).randn(2);
    CHECK(scalar[0] == doctest::Approx(1.5410).epsilon(1e-4));
    CHECK(scalar[1] == doctest::Approx(-0.2934).epsilon(1e-4));
    const std::vector<float> chunked = TorchGenerator(0).randn(16);
    CHECK(chunked[0] == doctest::Approx(-1.1258).epsilon(1e-4));
    CHECK(chunked[15] == doctest::Approx(-0.2473).epsilon(1e-4));
    const std::vector<float> unclip = TorchGenerator(static_cast<std::uint64_t>(std::int64_t{-10})).randn(1024);
    CHECK(unclip[0] == doctest::Approx(-0.8628).epsilon(1e-4));
    CHECK(unclip[7] == doctest::Approx(-1.1065).epsilon(1e-4));
}

TEST_CASE("An unknown randn kernel name is refused with the valid names") {
    CHECK_THROWS_STATUS(sampling::randn_kernel_from_name("avx512"), Status::invalid_argument,
                        "unknown randn kernel 'avx512' (valid: avx2, generic)");
    CHECK(std::string(sampling::randn_kernel_name(RandnKernel::generic)) == "generic");
}
}
