// CudaBackend::attention against CpuBackend::attention (fp32) on random inputs, through every
// kernel: the tensor-core head dims, the wide head of the VAE, and the fp32 fallback; with partial
// tiles, the causal mask, q/k/v as column ranges of one fused projection and padded output rows.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cuda_test_support.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

using namespace unclip;
using namespace unclip::cuda_test;

namespace {

// The fallback sums in fp32 like the CPU, in another order: rounding differences only.
constexpr double kFp32Tolerance = 1e-5;

struct AttentionCase {
    std::int64_t batch = 1, q_len = 0, kv_len = 0;
    int heads = 1, head_dim = 0;
    bool causal = false;
    float scale = 0.0f;
    bool fused_qkv = false;     // q, k, v: column ranges of one [B, L, 3 * heads * head_dim] buffer
    int out_padding = 0;        // columns after each output row that attention must not write
    float input_range = 1.0f;   // inputs uniform in [-input_range, input_range]
    CudaBackend::FlashTile tile;

    std::string describe() const {
        return "batch " + std::to_string(batch) + ", q_len " + std::to_string(q_len) + ", kv_len " +
               std::to_string(kv_len) + ", heads " + std::to_string(heads) + ", head_dim " +
               std::to_string(head_dim) + (causal ? ", causal" : "") + (fused_qkv ? ", fused qkv" : "") +
               (scale != 0.0f ? ", scale " + std::to_string(scale) : "") + ", flash tile " +
               std::to_string(tile.warps) + "x" + std::to_string(tile.warp_rows) + "x" +
               std::to_string(tile.blocks_per_sm);
    }
};

// Where q, k, v and out live in their buffers: element offsets and strides.
struct Layout {
    std::int64_t q_offset = 0, k_offset = 0, v_offset = 0;
    std::int64_t q_stride = 0, k_stride = 0, v_stride = 0, out_stride = 0;
    std::int64_t q_batch_stride = 0, k_batch_stride = 0, v_batch_stride = 0, out_batch_stride = 0;
};

template <class Args>
Args make_args(const AttentionCase& c, const Layout& l, const float* q, const float* k, const float* v, float* out) {
    Args a;
    a.q = q + l.q_offset;
    a.k = k + l.k_offset;
    a.v = v + l.v_offset;
    a.out = out;
    a.batch = c.batch;
    a.q_len = c.q_len;
    a.kv_len = c.kv_len;
    a.heads = c.heads;
    a.head_dim = c.head_dim;
    a.q_stride = l.q_stride, a.k_stride = l.k_stride, a.v_stride = l.v_stride, a.out_stride = l.out_stride;
    a.q_batch_stride = l.q_batch_stride, a.k_batch_stride = l.k_batch_stride;
    a.v_batch_stride = l.v_batch_stride, a.out_batch_stride = l.out_batch_stride;
    a.causal = c.causal;
    a.scale = c.scale;
    return a;
}

struct Results {
    std::vector<float> gpu, cpu;       // the attention outputs, [B, q_len, heads * head_dim]
    bool gpu_padding_untouched = true;  // out_padding columns still hold DeviceFloats' NaN
};

Results run_both(const AttentionCase& c) {
    const std::int64_t dim = static_cast<std::int64_t>(c.heads) * c.head_dim;
    Layout l;
    std::vector<float> q, k, v;  // with fused_qkv, q holds all three
    if (c.fused_qkv) {
        REQUIRE(c.q_len == c.kv_len);
        q = random_floats(static_cast<std::size_t>(c.batch * c.q_len * 3 * dim), 11, -c.input_range, c.input_range);
        l.k_offset = dim, l.v_offset = 2 * dim;
        l.q_stride = l.k_stride = l.v_stride = 3 * dim;
        l.q_batch_stride = l.k_batch_stride = l.v_batch_stride = c.q_len * 3 * dim;
    } else {
        q = random_floats(static_cast<std::size_t>(c.batch * c.q_len * dim), 1, -c.input_range, c.input_range);
        k = random_floats(static_cast<std::size_t>(c.batch * c.kv_len * dim), 2, -c.input_range, c.input_range);
        v = random_floats(static_cast<std::size_t>(c.batch * c.kv_len * dim), 3, -c.input_range, c.input_range);
        l.q_stride = l.k_stride = l.v_stride = dim;
        l.q_batch_stride = c.q_len * dim;
        l.k_batch_stride = l.v_batch_stride = c.kv_len * dim;
    }
    l.out_stride = dim + c.out_padding;
    l.out_batch_stride = c.q_len * l.out_stride;
    const std::int64_t out_size = c.batch * c.q_len * l.out_stride;

    std::vector<float> cpu_out(static_cast<std::size_t>(out_size), 0.0f);
    {
        const CpuBackend::Context cpu(2);
        const float* k_host = c.fused_qkv ? q.data() : k.data();
        const float* v_host = c.fused_qkv ? q.data() : v.data();
        CpuBackend::attention(cpu, make_args<CpuBackend::AttentionArgs>(c, l, q.data(), k_host, v_host, cpu_out.data()));
    }

    std::vector<float> gpu_out;
    {
        CudaBackend::Context gpu;
        gpu.set_flash_tile(c.tile);
        const DeviceFloats q_dev(gpu, q);
        const DeviceFloats k_dev(gpu, c.fused_qkv ? std::vector<float>(1) : k);
        const DeviceFloats v_dev(gpu, c.fused_qkv ? std::vector<float>(1) : v);
        const DeviceFloats out_dev(out_size);
        const float* k_device = c.fused_qkv ? q_dev.get() : k_dev.get();
        const float* v_device = c.fused_qkv ? q_dev.get() : v_dev.get();
        CudaBackend::attention(gpu, make_args<CudaBackend::AttentionArgs>(c, l, q_dev.get(), k_device, v_device,
                                                                          out_dev.get()));
        gpu_out = out_dev.read(gpu);
    }

    Results r;
    for (std::int64_t row = 0; row < c.batch * c.q_len; ++row) {
        const auto first = static_cast<std::size_t>(row * l.out_stride);
        r.cpu.insert(r.cpu.end(), cpu_out.begin() + first, cpu_out.begin() + first + dim);
        r.gpu.insert(r.gpu.end(), gpu_out.begin() + first, gpu_out.begin() + first + dim);
        for (int p = 0; p < c.out_padding; ++p)
            r.gpu_padding_untouched = r.gpu_padding_untouched && std::isnan(gpu_out[first + dim + p]);
    }
    return r;
}

void check_matches_cpu(const AttentionCase& c, double tolerance) {
    INFO(c.describe());
    const Results r = run_both(c);
    CHECK(all_finite(r.gpu));
    CHECK(r.gpu_padding_untouched);
    CHECK(std::any_of(r.cpu.begin(), r.cpu.end(), [](float x) { return x != 0.0f; }));  // empty never passes
    const double error = relative_l2(r.gpu, r.cpu);
    INFO("relative L2 error " << error);
    CHECK(error <= tolerance);
}

AttentionCase self_attention(std::int64_t batch, std::int64_t tokens, int heads, int head_dim) {
    AttentionCase c;
    c.batch = batch, c.q_len = tokens, c.kv_len = tokens, c.heads = heads, c.head_dim = head_dim;
    return c;
}

AttentionCase cross_attention(std::int64_t batch, std::int64_t q_len, std::int64_t kv_len, int heads, int head_dim) {
    AttentionCase c = self_attention(batch, q_len, heads, head_dim);
    c.kv_len = kv_len;
    return c;
}

AttentionCase causal(AttentionCase c) {
    c.causal = true;
    return c;
}

AttentionCase fused(AttentionCase c, int out_padding) {
    c.fused_qkv = true;
    c.out_padding = out_padding;
    return c;
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("attention with head_dim 64 matches the CPU on UNet-like self-attention") {
    check_matches_cpu(self_attention(2, 300, 5, 64), kHalfTolerance);
    check_matches_cpu(self_attention(2, 1024, 5, 64), kHalfTolerance);
}

TEST_CASE("attention over 77 keys (UNet cross-attention) matches the CPU") {
    check_matches_cpu(cross_attention(2, 300, 77, 5, 64), kHalfTolerance);
    check_matches_cpu(cross_attention(2, 1, 77, 5, 64), kHalfTolerance);
}

TEST_CASE("causal attention over 77 tokens (text tower) matches the CPU") {
    check_matches_cpu(causal(self_attention(2, 77, 16, 64)), kHalfTolerance);
    check_matches_cpu(causal(self_attention(1, 200, 2, 64)), kHalfTolerance);
}

TEST_CASE("attention with head_dim 80 over 257 tokens (ViT-H vision tower) matches the CPU") {
    check_matches_cpu(self_attention(1, 257, 16, 80), kHalfTolerance);
}

TEST_CASE("attention with head_dim 512 and 256 (VAE mid-block) matches the CPU") {
    check_matches_cpu(self_attention(1, 600, 1, 512), kHalfTolerance);
    check_matches_cpu(self_attention(2, 100, 1, 512), kHalfTolerance);
    check_matches_cpu(causal(self_attention(1, 130, 2, 256)), kHalfTolerance);
    check_matches_cpu(cross_attention(2, 70, 77, 2, 256), kHalfTolerance);
}

TEST_CASE("attention matches the CPU for every tensor-core head_dim on ragged lengths") {
    for (int head_dim : {16, 32, 48, 64, 80, 96, 112, 128}) {
        check_matches_cpu(causal(self_attention(2, 131, 3, head_dim)), kHalfTolerance);
        check_matches_cpu(cross_attention(2, 70, 200, 3, head_dim), kHalfTolerance);
    }
}

TEST_CASE("attention with head_dim 8, 24 or 40 runs in fp32 and matches the CPU closely") {
    check_matches_cpu(self_attention(2, 150, 4, 8), kFp32Tolerance);
    check_matches_cpu(causal(self_attention(2, 150, 4, 8)), kFp32Tolerance);
    check_matches_cpu(cross_attention(2, 40, 77, 3, 24), kFp32Tolerance);
    check_matches_cpu(causal(self_attention(1, 77, 2, 40)), kFp32Tolerance);
}

TEST_CASE("attention reads q, k and v as column ranges of one fused projection") {
    check_matches_cpu(fused(self_attention(2, 300, 5, 64), 8), kHalfTolerance);
    check_matches_cpu(fused(causal(self_attention(2, 77, 4, 64)), 3), kHalfTolerance);
    check_matches_cpu(fused(self_attention(1, 200, 1, 512), 16), kHalfTolerance);
    check_matches_cpu(fused(self_attention(2, 100, 3, 24), 5), kFp32Tolerance);
}

TEST_CASE("attention honours an explicit scale, also with peaked softmax rows") {
    AttentionCase c = self_attention(2, 200, 4, 32);
    c.scale = 0.3f;
    c.input_range = 2.0f;  // scores of a few units: most of each row's weight on a few keys
    check_matches_cpu(c, kHalfTolerance);
    c.head_dim = 24;
    check_matches_cpu(c, kFp32Tolerance);
    c = self_attention(1, 300, 1, 512);
    c.scale = 0.1f;
    c.input_range = 2.0f;
    check_matches_cpu(c, kHalfTolerance);
}

TEST_CASE("attention over 96x96 tokens with head_dim 64 matches the CPU") {
    check_matches_cpu(self_attention(1, 96 * 96, 2, 64), kHalfTolerance);
}

TEST_CASE("attention matches the CPU with each flash-attention query tile") {
    const CudaBackend::FlashTile tiles[] = {{8, 16, 1}, {8, 16, 2}, {4, 32, 1}, {8, 32, 1}};
    for (const CudaBackend::FlashTile tile : tiles) {
        // Ragged query counts leave warps and m-tiles without rows; head_dim 80 takes 16 rows per
        // warp, and 96 one block per SM, whatever the tile asks.
        for (AttentionCase c : {self_attention(2, 1000, 3, 64), self_attention(1, 300, 2, 16),
                                cross_attention(2, 333, 77, 5, 64), causal(self_attention(2, 77, 4, 64)),
                                fused(self_attention(2, 257, 2, 48), 3), self_attention(1, 257, 2, 80),
                                self_attention(1, 200, 1, 96)}) {
            c.tile = tile;
            check_matches_cpu(c, kHalfTolerance);
        }
    }
}

TEST_CASE("the flash-attention tile is 4x32 by default, takes 8x16, 8x16x2 and 8x32, and refuses others by name") {
    CudaBackend::Context gpu;
    if (!std::getenv("UNCLIP_CUDA_FLASH_TILE")) {
        CHECK(gpu.flash_tile().warps == 4);
        CHECK(gpu.flash_tile().warp_rows == 32);
    }
    gpu.set_flash_tile({8, 16, 2});
    CHECK(gpu.flash_tile().warps == 8);
    for (const CudaBackend::FlashTile bad : {CudaBackend::FlashTile{4, 16, 1}, CudaBackend::FlashTile{4, 32, 2}}) {
        const std::string name = std::to_string(bad.warps) + "x" + std::to_string(bad.warp_rows) + "x" +
                                 std::to_string(bad.blocks_per_sm);
        try {
            gpu.set_flash_tile(bad);
            FAIL(name << " was accepted");
        } catch (const Error& e) {
            CHECK(e.status() == Status::invalid_argument);
            CHECK(std::string(e.what()).find(name) != std::string::npos);
        }
    }
    CHECK(gpu.flash_tile().blocks_per_sm == 2);  // unchanged by the refused calls
}

TEST_CASE("attention rejects bad arguments naming them, and does nothing without queries") {
    const CudaBackend::Context gpu;
    const DeviceFloats q(64 * 64), k(64 * 64), v(64 * 64), out(64 * 64);
    CudaBackend::AttentionArgs a;
    a.q = q.get(), a.k = k.get(), a.v = v.get(), a.out = out.get();
    a.batch = 1, a.q_len = 64, a.kv_len = 64, a.heads = 1, a.head_dim = 64;
    a.q_stride = a.k_stride = a.v_stride = a.out_stride = 64;
    auto failure = [&](CudaBackend::AttentionArgs bad) -> std::string {
        try {
            CudaBackend::attention(gpu, bad);
        } catch (const Error& e) {
            CHECK(e.status() == Status::invalid_argument);
            return e.what();
        }
        return "no error";
    };
    CudaBackend::AttentionArgs bad = a;
    bad.head_dim = 0;
    CHECK(failure(bad).find("head_dim 0") != std::string::npos);
    bad = a;
    bad.heads = -2;
    CHECK(failure(bad).find("heads -2") != std::string::npos);
    bad = a;
    bad.kv_len = 0;
    CHECK(failure(bad).find("no keys") != std::string::npos);
    bad = a;
    bad.v = nullptr;
    CHECK(failure(bad).find("null") != std::string::npos);

    CudaBackend::AttentionArgs empty = a;
    empty.q_len = 0;
    CudaBackend::attention(gpu, empty);
    empty = a;
    empty.batch = 0;
    CudaBackend::attention(gpu, empty);
    for (float x : out.read(gpu)) REQUIRE(std::isnan(x));  // untouched
}

}  // TEST_SUITE
