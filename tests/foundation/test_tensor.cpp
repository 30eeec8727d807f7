#include <cstdint>
#include <cstring>

#include "test_support.hpp"
#include <algorithm>
#include <vector>

#include "unclip/backend/cpu.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/scratch.hpp"
#include "unclip/tensor.hpp"

using namespace unclip;

TEST_SUITE("foundation") {

TEST_CASE("owned tensors are 64-byte aligned, contiguous and sized by dtype") {
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
        const Tensor t = Tensor::zeros(dtype, {2, 3, 5, 7});
        CHECK(reinterpret_cast<std::uintptr_t>(t.raw_data()) % kTensorAlignment == 0);
        CHECK(t.is_contiguous());
        CHECK(t.owns_storage());
        CHECK(t.numel() == 210);
        CHECK(t.nbytes() == 210 * dtype_size(dtype));
        CHECK(t.strides() == Strides{105, 35, 7, 1});
    }
    const Tensor scalar = Tensor::zeros(DType::f32, Shape{});
    CHECK(scalar.rank() == 0);
    CHECK(scalar.numel() == 1);
    CHECK_FALSE(Tensor().defined());
}

TEST_CASE("shapes reject more than four dimensions, negative sizes and overflowing counts") {
    CHECK_THROWS_STATUS(Shape({1, 2, 3, 4, 5}), Status::invalid_argument, "more than 4");
    CHECK_THROWS_STATUS(Shape({2, -1}), Status::invalid_argument, "negative");
    const Shape huge{INT64_MAX / 2, 4};
    CHECK_THROWS_STATUS(huge.numel(), Status::invalid_argument, "overflows");
    CHECK_THROWS_STATUS(Tensor::empty(DType::f32, huge), Status::invalid_argument, "overflows");
}

TEST_CASE("typed access checks the dtype") {
    const Tensor t = Tensor::zeros(DType::f16, {4});
    CHECK_NOTHROW(t.data<Half>());
    CHECK_THROWS_STATUS(t.data<float>(), Status::invalid_argument, "holds F16");
}

TEST_CASE("slices and reshapes share storage, and clone makes strided data contiguous") {
    Tensor t = Tensor::empty(DType::f32, {2, 3, 4});
    float* p = t.data<float>();
    for (int i = 0; i < 24; ++i) p[i] = static_cast<float>(i);

    const Tensor middle = t.slice(1, 1, 3);  // [2, 2, 4], strided
    CHECK(middle.shape() == Shape{2, 2, 4});
    CHECK_FALSE(middle.is_contiguous());
    const Tensor packed = middle.clone();
    CHECK(packed.is_contiguous());
    const float expected[] = {4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23};
    CHECK(std::memcmp(packed.data<float>(), expected, sizeof expected) == 0);

    const Tensor flat = t.reshape({6, 4});
    CHECK(flat.raw_data() == t.raw_data());
    CHECK_THROWS_STATUS(t.reshape({5, 5}), Status::invalid_argument, "24 elements");
    CHECK_THROWS_STATUS(middle.reshape({16}), Status::invalid_argument, "not contiguous");
    CHECK_THROWS_STATUS(t.slice(1, 2, 4), Status::invalid_argument, "out of range");
    CHECK_THROWS_STATUS(t.slice(3, 0, 1), Status::invalid_argument, "axis 3");

    const Tensor first_row = t.slice(0, 1, 2);  // contiguous despite the offset
    CHECK(first_row.is_contiguous());
    CHECK(first_row.data<float>()[0] == 12.0f);
}

TEST_CASE("dtype conversion round-trips values that the narrow formats represent") {
    Tensor t = Tensor::empty(DType::f32, {5});
    const float values[] = {0.5f, -1.25f, 3.0f, 1024.0f, -0.0f};
    std::memcpy(t.data<float>(), values, sizeof values);
    for (DType narrow : {DType::f16, DType::bf16}) {
        const Tensor back = t.to(narrow).to(DType::f32);
        CHECK(std::memcmp(back.data<float>(), values, sizeof values) == 0);
    }
    const Tensor f16_to_bf16 = t.to(DType::f16).to(DType::bf16);
    CHECK(f16_to_bf16.dtype() == DType::bf16);
    CHECK(static_cast<float>(f16_to_bf16.data<BFloat16>()[1]) == -1.25f);
}

TEST_CASE("borrowed tensors keep their owner alive") {
    auto buffer = std::make_shared<std::vector<float>>(8, 2.0f);
    Tensor view = Tensor::borrow(buffer->data(), DType::f32, {8}, buffer);
    std::weak_ptr<std::vector<float>> watch = buffer;
    buffer.reset();
    CHECK_FALSE(watch.expired());
    CHECK(view.data<float>()[7] == 2.0f);
    CHECK_FALSE(view.owns_storage());
    view = Tensor();
    CHECK(watch.expired());
}

TEST_CASE("CUDA tensors without a usable GPU fail with a device error") {
    if (cuda::device_count() > 0) {
        MESSAGE("a CUDA device is present; the cuda test executable covers device tensors");
        return;
    }
    CHECK_THROWS_STATUS(Tensor::empty(DType::f16, {4}, Device::cuda), Status::device, "");
    CHECK_THROWS_STATUS(Tensor::zeros(DType::f32, {4}).to(Device::cuda), Status::device, "");
}

TEST_CASE("scratch hands out aligned buffers, restores frames and reports under-sized reservations") {
    Scratch scratch(1000);
    {
        Scratch::Frame frame(scratch);
        float* a = scratch.take<float>(3);
        float* b = scratch.take<float>(3);
        CHECK(reinterpret_cast<std::uintptr_t>(a) % Scratch::kAlignment == 0);
        CHECK(reinterpret_cast<std::uintptr_t>(b) % Scratch::kAlignment == 0);
        CHECK(scratch.used() == 128);
        CHECK_THROWS_STATUS(scratch.take<float>(1000), Status::internal, "under-reported");
        CHECK_THROWS_STATUS(scratch.reserve(1 << 20), Status::internal, "cannot grow");
    }
    CHECK(scratch.used() == 0);
}

}  // TEST_SUITE

TEST_SUITE("foundation") {

TEST_CASE("a CPU context refuses absurd thread counts and runs every piece of a parallel loop once") {
    CHECK_THROWS_STATUS(CpuBackend::Context(100000), Status::invalid_argument, "100000 threads");
    const CpuBackend::Context ctx(3);
    CHECK(ctx.threads() == 3);
    std::vector<int> hits(1000, 0);
    ctx.parallel_for(1000, 7, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
    });
    CHECK(std::count(hits.begin(), hits.end(), 1) == 1000);
    CHECK_THROWS_STATUS(ctx.parallel_for(10, 1, [](std::int64_t, std::int64_t) { throw Error(Status::internal, "boom"); }),
                        Status::internal, "boom");
}

}  // TEST_SUITE
