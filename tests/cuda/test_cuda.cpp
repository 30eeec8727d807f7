// GPU tests. Without a device, main() prints why and returns 77 (ctest shows the tests as skipped);
// listing the tests still works so that ctest can discover them.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "unclip/backend/cuda.hpp"

using namespace unclip;

TEST_SUITE("cuda") {

TEST_CASE("tensors round-trip between host and device") {
    Tensor host = Tensor::empty(DType::f32, {3, 5});
    for (int i = 0; i < 15; ++i) host.data<float>()[i] = static_cast<float>(i) - 7.5f;
    const Tensor back = host.to(Device::cuda).to(Device::cpu);
    CHECK(std::memcmp(back.raw_data(), host.raw_data(), host.nbytes()) == 0);
}

TEST_CASE("device fp16 conversion is bit-identical to the CPU conversion") {
    std::vector<float> values;
    for (int e = -30; e <= 17; ++e)
        for (float m : {1.0f, 1.000244f, 1.5f, 1.999f}) values.push_back(std::ldexp(m, e)), values.push_back(-std::ldexp(m, e));
    const auto n = static_cast<std::int64_t>(values.size());
    Tensor host = Tensor::empty(DType::f32, {n});
    std::memcpy(host.raw_data(), values.data(), host.nbytes());
    const Tensor device_in = host.to(Device::cuda);
    Tensor device_half = Tensor::empty(DType::f16, {n}, Device::cuda);
    cuda::convert_f32_to_f16(device_in.data<float>(), device_half.raw_data(), static_cast<std::size_t>(n));
    const Tensor got = device_half.to(Device::cpu);
    const Tensor expected = host.to(DType::f16);
    CHECK(std::memcmp(got.raw_data(), expected.raw_data(), expected.nbytes()) == 0);
}

}  // TEST_SUITE

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    bool listing = false;
    for (int i = 1; i < argc; ++i)
        listing = listing || std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-ltc", 4) == 0;
    if (!listing && cuda::device_count() == 0) {
        std::printf("cuda: no CUDA device (%s), %zu tests skipped\n", cuda::device_description().c_str(),
                    doctest::detail::getRegisteredTests().size());
        return 77;
    }
    return context.run();
}
