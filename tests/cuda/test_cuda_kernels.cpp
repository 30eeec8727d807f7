// The element-wise, normalisation and layout primitives of CudaBackend against CpuBackend on the
// same random inputs: odd sizes (scalar paths and partial tiles), multiples of 4 (float4 paths),
// misaligned pointers (the scalar fallback), batch 1 and 2, and one UNet- or VAE-sized case each.
// Outputs start as NaN and sit between NaN guards, so unwritten elements and out-of-bounds writes
// both fail.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda_test_support.hpp"

using namespace unclip;
using cuda_test::all_finite;
using cuda_test::DeviceFloats;
using cuda_test::random_floats;
using cuda_test::relative_l2;

namespace {

// fp32 on both sides; what differs is summation order (statistics are in double on both) and
// libm against CUDA's erff/expf/cosf/sinf, each a couple of ulps: ~1e-7 in practice.
constexpr double kTolerance = 1e-5;
constexpr std::int64_t kGuard = 64;  // floats: keeps the interior 16-byte aligned

// Device memory with kGuard NaN floats before and after n floats at `offset` (1 misaligns them).
class GuardedFloats {
public:
    explicit GuardedFloats(std::int64_t n, std::int64_t offset = 0)
        : n_(n), offset_(offset), buffer_(n + 2 * kGuard + offset) {
        // The poison goes through a plain cudaMemcpy, which may return before a pageable copy
        // lands, while the backend works on its own non-blocking stream. A device-to-host copy on
        // the same default stream returns only once everything queued before it is done.
        float first = 0.0f;
        cuda::copy(&first, buffer_.get(), sizeof first, cuda::CopyKind::device_to_host);
    }
    GuardedFloats(const CudaBackend::Context& ctx, const std::vector<float>& host, std::int64_t offset = 0)
        : GuardedFloats(static_cast<std::int64_t>(host.size()), offset) {
        CudaBackend::upload(ctx, host.data(), get(), n_);
    }
    float* get() const noexcept { return buffer_.get() + kGuard + offset_; }

    // The n floats; fails the test case if a guard was written.
    std::vector<float> read(const CudaBackend::Context& ctx) const {
        const std::vector<float> all = buffer_.read(ctx);
        const auto begin = all.begin() + kGuard + offset_;
        const bool guards_intact = std::all_of(all.begin(), begin, [](float v) { return std::isnan(v); }) &&
                                   std::all_of(begin + n_, all.end(), [](float v) { return std::isnan(v); });
        CHECK_MESSAGE(guards_intact, "a kernel wrote outside its output");
        return {begin, begin + n_};
    }

private:
    std::int64_t n_, offset_;
    DeviceFloats buffer_;
};

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance = kTolerance) {
    REQUIRE(got.size() == want.size());
    CHECK(all_finite(got));
    CHECK(relative_l2(got, want) <= tolerance);
}

std::size_t size_of(std::int64_t n) { return static_cast<std::size_t>(n); }

// GELU's 1 + erf(x / sqrt 2) cancels for x below about -2, where Eigen's and CUDA's erf differ by
// an ulp of 1: up to 1e-2 relative on such an element. In a long vector those elements weigh
// nothing in the relative L2 error; a tiny case made of them would measure libm, not the kernel.
float lowest_gelu_input(std::int64_t n) { return n < 64 ? -2.0f : -8.0f; }

// Runs the same unary activation on both backends: out of place, in place and misaligned.
template <class CpuOp, class CudaOp>
void check_activation(CpuOp cpu_op, CudaOp cuda_op, bool erf_tail = false) {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    for (const std::int64_t n : {1, 3, 4, 31, 1023, 4096, 100003, 2 * 320 * 96 * 96}) {
        CAPTURE(n);
        const float lo = erf_tail ? lowest_gelu_input(n) : -8.0f;
        const std::vector<float> x = random_floats(size_of(n), static_cast<std::uint32_t>(n), lo, 8.0f);
        std::vector<float> want(x.size());
        cpu_op(cpu, x.data(), want.data(), n);

        const GuardedFloats dx(gpu, x);
        GuardedFloats dy(n);
        cuda_op(gpu, dx.get(), dy.get(), n);
        check_close(dy.read(gpu), want);

        const GuardedFloats in_place(gpu, x);
        cuda_op(gpu, in_place.get(), in_place.get(), n);
        check_close(in_place.read(gpu), want);

        const GuardedFloats misaligned_x(gpu, x, 1);
        GuardedFloats misaligned_y(n, 3);
        cuda_op(gpu, misaligned_x.get(), misaligned_y.get(), n);
        check_close(misaligned_y.read(gpu), want);
    }
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("upload, copy and download return exactly the floats sent, and empty copies do nothing") {
    const CudaBackend::Context gpu;
    for (const std::int64_t n : {1, 5, 4096, 1000003}) {
        CAPTURE(n);
        const std::vector<float> x = random_floats(size_of(n), 7);
        const GuardedFloats dx(gpu, x);
        GuardedFloats dy(n, 1);
        CudaBackend::copy(gpu, dx.get(), dy.get(), n);
        std::vector<float> back(x.size(), 0.0f);
        CudaBackend::download(gpu, dy.get(), back.data(), n);
        CHECK(back == x);
        CHECK(dx.read(gpu) == x);
    }
    GuardedFloats empty(0);
    CudaBackend::upload(gpu, nullptr, empty.get(), 0);
    CudaBackend::copy(gpu, empty.get(), empty.get(), 0);
    CudaBackend::download(gpu, empty.get(), nullptr, 0);
    CHECK(empty.read(gpu).empty());
}

TEST_CASE("gelu matches the CPU's exact erf GELU, in place and misaligned") {
    check_activation([](auto& c, const float* x, float* y, std::int64_t n) { CpuBackend::gelu(c, x, y, n); },
                     [](auto& c, const float* x, float* y, std::int64_t n) { CudaBackend::gelu(c, x, y, n); },
                     /*erf_tail=*/true);
}

TEST_CASE("quick_gelu matches the CPU, in place and misaligned") {
    check_activation([](auto& c, const float* x, float* y, std::int64_t n) { CpuBackend::quick_gelu(c, x, y, n); },
                     [](auto& c, const float* x, float* y, std::int64_t n) { CudaBackend::quick_gelu(c, x, y, n); });
}

TEST_CASE("silu matches the CPU, in place and misaligned") {
    check_activation([](auto& c, const float* x, float* y, std::int64_t n) { CpuBackend::silu(c, x, y, n); },
                     [](auto& c, const float* x, float* y, std::int64_t n) { CudaBackend::silu(c, x, y, n); });
}

TEST_CASE("geglu matches the CPU for odd and UNet-sized rows") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t rows, inner;
    };
    for (const Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{2, 4}, Shape{77, 1023}, Shape{9, 1280}, Shape{4096, 1280}}) {
        CAPTURE(s.rows);
        CAPTURE(s.inner);
        const std::vector<float> x =
            random_floats(size_of(s.rows * 2 * s.inner), 11, lowest_gelu_input(s.rows * s.inner), 5.0f);
        std::vector<float> want(size_of(s.rows * s.inner));
        CpuBackend::geglu(cpu, x.data(), want.data(), s.rows, s.inner);
        for (const std::int64_t offset : {0, 1}) {
            CAPTURE(offset);
            const GuardedFloats dx(gpu, x, offset);
            GuardedFloats dy(s.rows * s.inner);
            CudaBackend::geglu(gpu, dx.get(), dy.get(), s.rows, s.inner);
            check_close(dy.read(gpu), want);
        }
    }
}

TEST_CASE("add matches the CPU for odd sizes and misaligned pointers") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    for (const std::int64_t n : {1, 6, 4096, 100001, 2 * 320 * 96 * 96}) {
        CAPTURE(n);
        const std::vector<float> x = random_floats(size_of(n), 1), y0 = random_floats(size_of(n), 2);
        std::vector<float> want = y0;
        CpuBackend::add(cpu, x.data(), want.data(), n);
        for (const std::int64_t offset : {0, 1}) {
            CAPTURE(offset);
            const GuardedFloats dx(gpu, x, offset);
            const GuardedFloats dy(gpu, y0);
            CudaBackend::add(gpu, dx.get(), dy.get(), n);
            check_close(dy.read(gpu), want);
        }
    }
}

TEST_CASE("add_channel_bias (apart and in place) and add_row_bias match the CPU on odd and UNet-sized shapes") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, spatial;
    };
    for (const Shape s : {Shape{1, 1, 1}, Shape{1, 4, 64}, Shape{2, 5, 7}, Shape{2, 3, 12}, Shape{2, 320, 96 * 96}}) {
        CAPTURE(s.batch);
        CAPTURE(s.channels);
        CAPTURE(s.spatial);
        const std::int64_t n = s.batch * s.channels * s.spatial;
        const std::vector<float> y0 = random_floats(size_of(n), 3), v = random_floats(size_of(s.channels), 4);
        std::vector<float> want(y0.size());
        CpuBackend::add_channel_bias(cpu, y0.data(), v.data(), want.data(), s.batch, s.channels, s.spatial);
        const GuardedFloats dx(gpu, y0), dv(gpu, v), dy(n);
        CudaBackend::add_channel_bias(gpu, dx.get(), dv.get(), dy.get(), s.batch, s.channels, s.spatial);
        check_close(dy.read(gpu), want);
        // In place, as the convolutions add their bias.
        CudaBackend::add_channel_bias(gpu, dx.get(), dv.get(), dx.get(), s.batch, s.channels, s.spatial);
        check_close(dx.read(gpu), want);

        // The same buffer read as [rows, cols] = [batch * channels, spatial], bias per column.
        const std::int64_t rows = s.batch * s.channels, cols = s.spatial;
        const std::vector<float> bias = random_floats(size_of(cols), 5);
        std::vector<float> want_rows = y0;
        CpuBackend::add_row_bias(cpu, want_rows.data(), bias.data(), rows, cols);
        for (const std::int64_t offset : {0, 1}) {
            CAPTURE(offset);
            const GuardedFloats dy_rows(gpu, y0), dbias(gpu, bias, offset);
            CudaBackend::add_row_bias(gpu, dy_rows.get(), dbias.get(), rows, cols);
            check_close(dy_rows.read(gpu), want_rows);
        }
    }
}

TEST_CASE("timestep embedding matches the CPU for sampler timesteps, odd batches and wide dims") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    for (const std::int64_t batch : {1, 2, 3, 70}) {
        for (const std::int64_t dim : {2, 320, 768, 1280, 1282}) {
            CAPTURE(batch);
            CAPTURE(dim);
            std::vector<float> t = random_floats(size_of(batch), static_cast<std::uint32_t>(dim), 0.0f, 1000.0f);
            t[0] = 999.0f;
            if (batch > 1) t[1] = 0.0f;
            std::vector<float> want(size_of(batch * dim));
            CpuBackend::timestep_embedding(cpu, t.data(), batch, dim, want.data());
            GuardedFloats out(batch * dim);
            CudaBackend::timestep_embedding(gpu, t.data(), batch, dim, out.get());
            const std::vector<float> got = out.read(gpu);
            check_close(got, want);
            double worst = 0.0;
            for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(double{got[i]} - want[i]));
            CHECK(worst <= 1e-5);
        }
    }
}

TEST_CASE("group norm matches the CPU on odd shapes, with and without fused SiLU, in place") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, spatial;
        int groups;
    };
    for (const Shape s : {Shape{1, 4, 1, 2}, Shape{2, 6, 7, 3}, Shape{1, 32, 64, 32}, Shape{2, 64, 9, 32},
                          Shape{2, 320, 24 * 24, 32}, Shape{1, 96, 1001, 32}}) {
        for (const bool silu : {false, true}) {
            CAPTURE(s.batch);
            CAPTURE(s.channels);
            CAPTURE(s.spatial);
            CAPTURE(silu);
            const std::int64_t n = s.batch * s.channels * s.spatial;
            // An offset mean, as real activations have: the statistics must not cancel.
            const std::vector<float> x = random_floats(size_of(n), 8, 2.0f, 4.0f);
            const std::vector<float> gamma = random_floats(size_of(s.channels), 9, 0.5f, 1.5f);
            const std::vector<float> beta = random_floats(size_of(s.channels), 10);
            std::vector<float> want(x.size());
            CpuBackend::group_norm(cpu, x.data(), gamma.data(), beta.data(), want.data(), s.batch, s.channels,
                                   s.spatial, s.groups, 1e-5f, silu);
            const GuardedFloats dx(gpu, x), dgamma(gpu, gamma), dbeta(gpu, beta);
            GuardedFloats dy(n);
            CudaBackend::group_norm(gpu, dx.get(), dgamma.get(), dbeta.get(), dy.get(), s.batch, s.channels, s.spatial,
                                    s.groups, 1e-5f, silu);
            check_close(dy.read(gpu), want);

            const GuardedFloats in_place(gpu, x, 1);
            CudaBackend::group_norm(gpu, in_place.get(), dgamma.get(), dbeta.get(), in_place.get(), s.batch, s.channels,
                                    s.spatial, s.groups, 1e-5f, silu);
            check_close(in_place.read(gpu), want);
        }
    }
}

TEST_CASE("group norm splits 768 px UNet and VAE groups over many blocks and still matches the CPU") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, spatial;
        bool silu;
    };
    for (const Shape s : {Shape{2, 320, 96 * 96, true}, Shape{1, 128, 384 * 384, false}}) {
        CAPTURE(s.channels);
        CAPTURE(s.spatial);
        const std::int64_t n = s.batch * s.channels * s.spatial;
        const std::vector<float> x = random_floats(size_of(n), 12, -3.0f, 5.0f);
        const std::vector<float> gamma = random_floats(size_of(s.channels), 13, 0.5f, 1.5f);
        const std::vector<float> beta = random_floats(size_of(s.channels), 14);
        std::vector<float> want(x.size());
        CpuBackend::group_norm(cpu, x.data(), gamma.data(), beta.data(), want.data(), s.batch, s.channels, s.spatial,
                               32, 1e-6f, s.silu);
        const GuardedFloats dx(gpu, x), dgamma(gpu, gamma), dbeta(gpu, beta);
        CudaBackend::group_norm(gpu, dx.get(), dgamma.get(), dbeta.get(), dx.get(), s.batch, s.channels, s.spatial, 32,
                                1e-6f, s.silu);
        check_close(dx.read(gpu), want);
    }
}

TEST_CASE("group_norm_affine with an addend matches the CPU's map, on odd, UNet and VAE shapes") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, spatial;
        int groups;
    };
    // An odd plane (scalar path), one smaller than a piece, and pieces per channel at 768 px.
    for (const Shape s : {Shape{2, 12, 35, 4}, Shape{1, 64, 6, 32}, Shape{2, 320, 96 * 96, 32},
                          Shape{1, 128, 384 * 384, 32}}) {
        CAPTURE(s.channels);
        CAPTURE(s.spatial);
        const std::int64_t planes = s.batch * s.channels;
        const std::vector<float> x = random_floats(size_of(planes * s.spatial), 15, -3.0f, 5.0f);
        const std::vector<float> gamma = random_floats(size_of(s.channels), 16, 0.5f, 1.5f);
        const std::vector<float> beta = random_floats(size_of(s.channels), 17);
        const std::vector<float> addend = random_floats(size_of(planes), 18, -4.0f, 4.0f);
        std::vector<float> scale(size_of(planes)), shift(scale.size());
        CpuBackend::group_norm_affine(cpu, x.data(), gamma.data(), beta.data(), s.batch, s.channels, s.spatial, s.groups,
                                      1e-6f, scale.data(), shift.data(), addend.data());
        const GuardedFloats dx(gpu, x), dgamma(gpu, gamma), dbeta(gpu, beta), daddend(gpu, addend);
        GuardedFloats dscale(planes), dshift(planes);
        CudaBackend::group_norm_affine(gpu, dx.get(), dgamma.get(), dbeta.get(), s.batch, s.channels, s.spatial, s.groups,
                                       1e-6f, dscale.get(), dshift.get(), daddend.get());
        check_close(dscale.read(gpu), scale);
        check_close(dshift.read(gpu), shift);
    }
}

TEST_CASE("group norm refuses channels that do not split into the groups") {
    const CudaBackend::Context gpu;
    GuardedFloats x(10 * 4);
    CHECK_THROWS_AS(CudaBackend::group_norm(gpu, x.get(), x.get(), x.get(), x.get(), 1, 10, 4, 3, 1e-5f, false),
                    Error);
}

TEST_CASE("layer norm matches the CPU on odd and CLIP/UNet-sized rows, in place and misaligned") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t rows, cols;
    };
    for (const Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{2, 4}, Shape{77, 768}, Shape{5, 1283}, Shape{257, 1280},
                          Shape{2 * 96 * 96, 320}}) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        const std::int64_t n = s.rows * s.cols;
        const std::vector<float> x = random_floats(size_of(n), 15, -2.0f, 6.0f);
        const std::vector<float> gamma = random_floats(size_of(s.cols), 16, 0.5f, 1.5f);
        const std::vector<float> beta = random_floats(size_of(s.cols), 17);
        std::vector<float> want(x.size());
        CpuBackend::layer_norm(cpu, x.data(), gamma.data(), beta.data(), want.data(), s.rows, s.cols, 1e-5f);
        const GuardedFloats dgamma(gpu, gamma), dbeta(gpu, beta);
        for (const std::int64_t offset : {0, 1}) {
            CAPTURE(offset);
            const GuardedFloats dx(gpu, x, offset);
            GuardedFloats dy(n);
            CudaBackend::layer_norm(gpu, dx.get(), dgamma.get(), dbeta.get(), dy.get(), s.rows, s.cols, 1e-5f);
            check_close(dy.read(gpu), want);

            CudaBackend::layer_norm(gpu, dx.get(), dgamma.get(), dbeta.get(), dx.get(), s.rows, s.cols, 1e-5f);
            check_close(dx.read(gpu), want);
        }
    }
}

TEST_CASE("concat_channels matches the CPU for odd, aligned and UNet skip shapes") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, c1, c2, spatial;
    };
    for (const Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{1, 4, 4, 64}, Shape{2, 640, 320, 96 * 96}}) {
        CAPTURE(s.batch);
        CAPTURE(s.c1);
        CAPTURE(s.c2);
        CAPTURE(s.spatial);
        const std::vector<float> a = random_floats(size_of(s.batch * s.c1 * s.spatial), 18);
        const std::vector<float> b = random_floats(size_of(s.batch * s.c2 * s.spatial), 19);
        std::vector<float> want(size_of(s.batch * (s.c1 + s.c2) * s.spatial));
        CpuBackend::concat_channels(cpu, a.data(), s.c1, b.data(), s.c2, want.data(), s.batch, s.spatial);
        const GuardedFloats da(gpu, a), db(gpu, b);
        GuardedFloats dy(static_cast<std::int64_t>(want.size()));
        CudaBackend::concat_channels(gpu, da.get(), s.c1, db.get(), s.c2, dy.get(), s.batch, s.spatial);
        CHECK(dy.read(gpu) == want);
    }
}

TEST_CASE("channels_to_tokens and tokens_to_channels match the CPU on partial tiles, also accumulating") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, spatial;
    };
    for (const Shape s : {Shape{1, 1, 1}, Shape{1, 4, 64}, Shape{2, 5, 33}, Shape{2, 37, 31 * 29}, Shape{1, 320, 96},
                          Shape{2, 320, 96 * 96}}) {
        CAPTURE(s.batch);
        CAPTURE(s.channels);
        CAPTURE(s.spatial);
        const std::int64_t n = s.batch * s.channels * s.spatial;
        const std::vector<float> x = random_floats(size_of(n), 20), y0 = random_floats(size_of(n), 21);

        std::vector<float> tokens(x.size());
        CpuBackend::channels_to_tokens(cpu, x.data(), tokens.data(), s.batch, s.channels, s.spatial);
        const GuardedFloats dx(gpu, x);
        GuardedFloats dtokens(n);
        CudaBackend::channels_to_tokens(gpu, dx.get(), dtokens.get(), s.batch, s.channels, s.spatial);
        CHECK(dtokens.read(gpu) == tokens);

        std::vector<float> channels(x.size());
        CpuBackend::tokens_to_channels(cpu, x.data(), channels.data(), s.batch, s.channels, s.spatial, false);
        GuardedFloats dchannels(n);
        CudaBackend::tokens_to_channels(gpu, dx.get(), dchannels.get(), s.batch, s.channels, s.spatial, false);
        CHECK(dchannels.read(gpu) == channels);

        std::vector<float> accumulated = y0;
        CpuBackend::tokens_to_channels(cpu, x.data(), accumulated.data(), s.batch, s.channels, s.spatial, true);
        const GuardedFloats daccumulated(gpu, y0);
        CudaBackend::tokens_to_channels(gpu, dx.get(), daccumulated.get(), s.batch, s.channels, s.spatial, true);
        check_close(daccumulated.read(gpu), accumulated);
    }
}

TEST_CASE("upsample_nearest picks PyTorch's nearest source pixels for integer and fractional scales") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, h, w, out_h, out_w;
    };
    for (const Shape s : {Shape{1, 3, 4, 4, 8, 8}, Shape{2, 5, 7, 9, 14, 18}, Shape{2, 3, 5, 7, 12, 10},
                          Shape{1, 2, 9, 9, 4, 4}, Shape{1, 1, 1, 1, 3, 300}, Shape{2, 320, 48, 48, 96, 96}}) {
        CAPTURE(s.h);
        CAPTURE(s.w);
        CAPTURE(s.out_h);
        CAPTURE(s.out_w);
        const std::vector<float> x = random_floats(size_of(s.batch * s.channels * s.h * s.w), 22);
        std::vector<float> want(size_of(s.batch * s.channels * s.out_h * s.out_w));
        CpuBackend::upsample_nearest(cpu, x.data(), want.data(), s.batch, s.channels, s.h, s.w, s.out_h, s.out_w);
        const GuardedFloats dx(gpu, x);
        GuardedFloats dy(static_cast<std::int64_t>(want.size()));
        CudaBackend::upsample_nearest(gpu, dx.get(), dy.get(), s.batch, s.channels, s.h, s.w, s.out_h, s.out_w);
        CHECK(dy.read(gpu) == want);
    }
}

TEST_CASE("gather_rows copies the rows named by host ids, repeats and both ends included") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t table_rows, cols, n;
    };
    for (const Shape s : {Shape{1, 1, 1}, Shape{10, 5, 7}, Shape{49408, 768, 154}, Shape{1000, 1283, 77},
                          Shape{300, 4, 2000}}) {
        CAPTURE(s.cols);
        CAPTURE(s.n);
        const std::vector<float> table = random_floats(size_of(s.table_rows * s.cols), 23);
        std::mt19937 rng(24);
        std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(s.table_rows - 1));
        std::vector<std::int32_t> ids(size_of(s.n));
        for (auto& id : ids) id = pick(rng);
        ids.front() = 0;
        ids.back() = static_cast<std::int32_t>(s.table_rows - 1);
        std::vector<float> want(size_of(s.n * s.cols));
        CpuBackend::gather_rows(cpu, table.data(), ids.data(), s.n, s.cols, want.data());
        for (const std::int64_t offset : {0, 1}) {
            CAPTURE(offset);
            const GuardedFloats dtable(gpu, table, offset);
            GuardedFloats dy(s.n * s.cols);
            CudaBackend::gather_rows(gpu, dtable.get(), ids.data(), s.n, s.cols, dy.get());
            CHECK(dy.read(gpu) == want);
        }
    }
}

TEST_CASE("extract_patches lays out ViT patches as the CPU does") {
    const CpuBackend::Context cpu(2);
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, height, width;
        int patch;
    };
    for (const Shape s : {Shape{1, 1, 1, 1, 1}, Shape{2, 5, 21, 14, 7}, Shape{2, 3, 32, 48, 16},
                          Shape{1, 3, 224, 224, 14}}) {
        CAPTURE(s.height);
        CAPTURE(s.width);
        CAPTURE(s.patch);
        const std::vector<float> x = random_floats(size_of(s.batch * s.channels * s.height * s.width), 25);
        std::vector<float> want(x.size());
        CpuBackend::extract_patches(cpu, x.data(), s.batch, s.channels, s.height, s.width, s.patch, want.data());
        const GuardedFloats dx(gpu, x);
        GuardedFloats dy(static_cast<std::int64_t>(want.size()));
        CudaBackend::extract_patches(gpu, dx.get(), s.batch, s.channels, s.height, s.width, s.patch, dy.get());
        CHECK(dy.read(gpu) == want);
    }
}

TEST_CASE("to_rgb8 writes the CPU pipeline's bytes, interleaved, clamped at both ends and truncated") {
    const CudaBackend::Context gpu;
    for (const auto& [batch, height, width] : {std::array<std::int64_t, 3>{1, 1, 1}, std::array<std::int64_t, 3>{2, 5, 7},
                                               std::array<std::int64_t, 3>{1, 64, 48}}) {
        CAPTURE(batch);
        CAPTURE(height);
        CAPTURE(width);
        const std::int64_t plane = height * width, n = batch * 3 * plane;
        std::vector<float> x = random_floats(size_of(n), 11, -1.3f, 1.3f);
        // Exact steps: both ends, and values whose byte sits on a truncation boundary.
        const float edges[] = {-1.0f, 1.0f, -2.0f, 2.0f, 0.0f, 1.0f / 255.0f, 2.0f / 255.0f - 1.0f, 0.5f};
        for (std::size_t i = 0; i < std::size(edges) && i < x.size(); ++i) x[i] = edges[i];
        std::vector<std::uint8_t> want(size_of(n));
        for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t p = 0; p < plane; ++p)
                for (int c = 0; c < 3; ++c) {
                    const float unit = (x[size_of((b * 3 + c) * plane + p)] + 1.0f) * 0.5f;
                    want[size_of((b * plane + p) * 3 + c)] = static_cast<std::uint8_t>(std::clamp(unit * 255.0f, 0.0f, 255.0f));
                }
        const GuardedFloats dx(gpu, x);
        auto* bytes = static_cast<std::uint8_t*>(cuda::allocate(size_of(n) + 1));
        std::vector<std::uint8_t> got(size_of(n) + 1, 0xAB);
        cuda::copy(bytes, got.data(), got.size(), cuda::CopyKind::host_to_device);  // a guard byte after the end
        CudaBackend::to_rgb8(gpu, dx.get(), batch, height, width, bytes);
        CudaBackend::download_bytes(gpu, bytes, got.data(), got.size());
        cuda::deallocate(bytes);
        CHECK(got.back() == 0xAB);
        got.pop_back();
        CHECK(got == want);
    }
}

}  // TEST_SUITE
