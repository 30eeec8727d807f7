// CudaBackend's cuBLAS primitives against CpuBackend on the same inputs: fp32 GEMMs for every
// transpose, linear layers over f32 / f16 / bf16 weights (the GPU rounds the activations to the
// weight's type, the CPU widens the same weights to fp32), and convolutions of every geometry the
// models use, whole and in bands of output rows.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "unclip/tensor.hpp"

using namespace unclip;
using cuda_test::all_finite;
using cuda_test::DeviceFloats;
using cuda_test::random_floats;
using cuda_test::relative_l2;

namespace {

constexpr double kFp32Tolerance = 1e-5;

// A [rows, cols] fp32 matrix stored as `dtype`: the values both backends see, on host and device.
struct Weights {
    Tensor host, device;
    Weights(const std::vector<float>& values, std::int64_t rows, std::int64_t cols, DType dtype) {
        Tensor f32 = Tensor::empty(DType::f32, {rows, cols});
        std::copy(values.begin(), values.end(), f32.data<float>());
        host = f32.to(dtype);
        device = host.to(Device::cuda);
    }
};

double tolerance_for(DType dtype) {
    return dtype == DType::f32 ? kFp32Tolerance : dtype == DType::f16 ? cuda_test::kHalfTolerance : cuda_test::kBf16Tolerance;
}

struct ConvCase {
    std::int64_t batch, in_channels, height, width, out_channels;
    int kernel, stride, pad_top, pad_left, pad_bottom, pad_right;
    bool bias, accumulate;
};

template <class Args>
Args conv_args(const ConvCase& c, DType dtype) {
    Args a;
    a.batch = c.batch;
    a.in_channels = c.in_channels;
    a.height = c.height;
    a.width = c.width;
    a.out_channels = c.out_channels;
    a.kernel_h = a.kernel_w = c.kernel;
    a.stride = c.stride;
    a.pad_top = c.pad_top;
    a.pad_left = c.pad_left;
    a.pad_bottom = c.pad_bottom;
    a.pad_right = c.pad_right;
    a.accumulate = c.accumulate;
    a.weight_dtype = dtype;
    return a;
}

// A GroupNorm (+ SiLU) folded into the convolution's input (Conv2dArgs::input_affine); groups 0: none.
struct Folded {
    int groups = 0;
    bool silu = false;
};

// The GPU's convolution of case c against the CPU's, the same half-precision weights (f16 unless
// `dtype` says bf16) on both; with `folded`, each backend's group_norm_affine maps the input first
// (and the two maps are compared too). upsample 2: the input is stored at half c's height and
// width and read upsampled (input_upsample).
double conv_error(const CudaBackend::Context& gpu, const ConvCase& c, std::uint32_t seed, Folded folded = {},
                  int upsample = 1, DType dtype = DType::f16) {
    CpuBackend::Context cpu(2);
    auto cpu_args = conv_args<CpuBackend::Conv2dArgs>(c, dtype);
    auto gpu_args = conv_args<CudaBackend::Conv2dArgs>(c, dtype);
    cpu_args.input_upsample = gpu_args.input_upsample = upsample;
    const std::int64_t depth = c.in_channels * c.kernel * c.kernel;
    const std::int64_t out_elements = c.batch * c.out_channels * cpu_args.out_height() * cpu_args.out_width();
    const std::int64_t spatial = (c.height / upsample) * (c.width / upsample);  // as stored
    const auto x = random_floats(static_cast<std::size_t>(c.batch * c.in_channels * spatial), seed);
    const Weights w(random_floats(static_cast<std::size_t>(c.out_channels * depth), seed + 1, -0.3f, 0.3f), c.out_channels,
                    depth, dtype);
    const auto bias = random_floats(static_cast<std::size_t>(c.out_channels), seed + 2);
    const auto initial = random_floats(static_cast<std::size_t>(out_elements), seed + 3);

    const std::int64_t planes = c.batch * c.in_channels;
    const auto gamma = random_floats(static_cast<std::size_t>(c.in_channels), seed + 4, 0.5f, 1.5f);
    const auto beta = random_floats(static_cast<std::size_t>(c.in_channels), seed + 5);
    std::vector<float> scale(static_cast<std::size_t>(planes)), shift(scale.size());
    if (folded.groups > 0) {
        CpuBackend::group_norm_affine(cpu, x.data(), gamma.data(), beta.data(), c.batch, c.in_channels, spatial,
                                      folded.groups, 1e-5f, scale.data(), shift.data());
        cpu_args.input_affine = backend::InputAffine{scale.data(), shift.data(), folded.silu};
    }
    std::vector<float> expected = initial;
    cpu_args.x = x.data();
    cpu_args.weight = w.host.raw_data();
    cpu_args.bias = c.bias ? bias.data() : nullptr;
    cpu_args.y = expected.data();
    Scratch cpu_scratch(CpuBackend::conv2d_scratch_bytes(cpu_args));
    CpuBackend::conv2d(cpu, cpu_args, cpu_scratch);

    const DeviceFloats dx(gpu, x), dbias(gpu, bias), dy(out_elements), dgamma(gpu, gamma), dbeta(gpu, beta);
    const DeviceFloats dscale(planes), dshift(planes);
    if (folded.groups > 0) {
        CudaBackend::group_norm_affine(gpu, dx.get(), dgamma.get(), dbeta.get(), c.batch, c.in_channels, spatial,
                                       folded.groups, 1e-5f, dscale.get(), dshift.get());
        const auto got_scale = dscale.read(gpu), got_shift = dshift.read(gpu);
        CHECK(all_finite(got_scale));
        CHECK(all_finite(got_shift));
        CHECK(relative_l2(got_scale, scale) <= 1e-5);
        CHECK(relative_l2(got_shift, shift) <= 1e-5);
        gpu_args.input_affine = backend::InputAffine{dscale.get(), dshift.get(), folded.silu};
    }
    if (c.accumulate) CudaBackend::upload(gpu, initial.data(), dy.get(), out_elements);
    gpu_args.x = dx.get();
    gpu_args.weight = w.device.raw_data();
    gpu_args.bias = c.bias ? dbias.get() : nullptr;
    gpu_args.y = dy.get();
    Scratch gpu_scratch(Device::cuda, CudaBackend::conv2d_scratch_bytes(gpu_args));
    CudaBackend::conv2d(gpu, gpu_args, gpu_scratch);
    const auto got = dy.read(gpu);
    CHECK(all_finite(got));
    return relative_l2(got, expected);
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("gemm matches the CPU in fp32 for every transpose, alpha, beta and leading dimension") {
    CudaBackend::Context gpu;
    CpuBackend::Context cpu(2);
    const std::int64_t m = 37, n = 53, k = 29, pad = 3;
    for (const bool ta : {false, true})
        for (const bool tb : {false, true})
            for (const float beta : {0.0f, 0.5f}) {
                INFO("trans_a " << ta << " trans_b " << tb << " beta " << beta);
                const std::int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                const auto a = random_floats(static_cast<std::size_t>((ta ? k : m) * lda), 1);
                const auto b = random_floats(static_cast<std::size_t>((tb ? n : k) * ldb), 2);
                const auto c0 = random_floats(static_cast<std::size_t>(m * ldc), 3);
                std::vector<float> expected = c0;
                CpuBackend::gemm(cpu, ta, tb, m, n, k, 1.5f, a.data(), lda, b.data(), ldb, beta, expected.data(), ldc);
                const DeviceFloats da(gpu, a), db(gpu, b), dc(gpu, c0);
                CudaBackend::gemm(gpu, ta, tb, m, n, k, 1.5f, da.get(), lda, db.get(), ldb, beta, dc.get(), ldc);
                const auto got = dc.read(gpu);
                CHECK(all_finite(got));
                CHECK(relative_l2(got, expected) <= kFp32Tolerance);
            }
}

// Every weight type, shape, bias and accumulate combination of CudaBackend::linear on `gpu`
// against the CPU. With `offset`, x, bias and y start one float into their buffers (4-byte
// alignment), which rules out the GEMM kernels that need wider alignment.
void check_linear(const CudaBackend::Context& gpu, std::int64_t offset) {
    CpuBackend::Context cpu(2);
    struct Shape3 {
        std::int64_t rows, in, out;
    };
    const auto shifted = [offset](std::vector<float> v) {
        v.insert(v.begin(), static_cast<std::size_t>(offset), 0.0f);
        return v;
    };
    for (const DType dtype : {DType::f32, DType::f16, DType::bf16})
        for (const Shape3 s : {Shape3{7, 40, 24}, Shape3{300, 96, 130}, Shape3{1, 1024, 1280}, Shape3{4608, 320, 320}})
            for (const bool with_bias : {false, true})
                for (const bool accumulate : {false, true}) {
                    INFO(dtype_name(dtype) << " rows " << s.rows << " in " << s.in << " out " << s.out << " bias " << with_bias
                                           << " accumulate " << accumulate << " offset " << offset);
                    const auto x = random_floats(static_cast<std::size_t>(s.rows * s.in), 11);
                    const Weights w(random_floats(static_cast<std::size_t>(s.out * s.in), 12, -0.2f, 0.2f), s.out, s.in, dtype);
                    const auto bias = random_floats(static_cast<std::size_t>(s.out), 13);
                    const auto y0 = random_floats(static_cast<std::size_t>(s.rows * s.out), 14);
                    std::vector<float> expected = y0;
                    CpuBackend::linear(cpu, x.data(), s.rows, s.in, s.out, w.host.raw_data(), dtype,
                                       with_bias ? bias.data() : nullptr, expected.data(), accumulate);
                    const DeviceFloats dx(gpu, shifted(x)), dbias(gpu, shifted(bias)), dy(gpu, shifted(y0));
                    CudaBackend::linear(gpu, dx.get() + offset, s.rows, s.in, s.out, w.device.raw_data(), dtype,
                                        with_bias ? dbias.get() + offset : nullptr, dy.get() + offset, accumulate);
                    auto got = dy.read(gpu);
                    got.erase(got.begin(), got.begin() + offset);
                    CHECK(all_finite(got));
                    CHECK(relative_l2(got, expected) <= tolerance_for(dtype));
                }
}

TEST_CASE("linear matches the CPU for f32, f16 and bf16 weights, with and without bias, overwriting and accumulating") {
    CudaBackend::Context gpu;
    gpu.set_bias_epilogue(false);
    check_linear(gpu, 0);
    check_linear(gpu, 1);
    CHECK(gpu.bias_epilogue_calls() == 0);
}

TEST_CASE("linear with the bias in cuBLASLt's epilogue matches the CPU, and takes that path for aligned half weights") {
    CudaBackend::Context gpu;
    gpu.set_bias_epilogue(true);
    check_linear(gpu, 0);
    // f16 and bf16, 4 shapes, accumulating or not: 16 biased calls with 16-byte aligned pointers.
    CHECK(gpu.bias_epilogue_calls() >= 16);
    check_linear(gpu, 1);  // fused or not, as cuBLASLt's algorithms for 4-byte alignment allow
}

// The models' geometries, for both convolution paths.
const ConvCase kGeometries[] = {
    {1, 5, 13, 11, 7, 3, 1, 1, 1, 1, 1, true, false},     // UNet/VAE 3x3
    {2, 5, 13, 11, 7, 3, 1, 1, 1, 1, 1, true, true},      // batch 2, residual accumulate
    {2, 5, 9, 24, 7, 3, 1, 1, 1, 1, 1, true, true},       // width % 8 == 0: eight pixels per im2col thread
    {2, 6, 13, 11, 4, 3, 2, 1, 1, 1, 1, true, false},     // UNet downsample
    {2, 6, 12, 10, 6, 3, 2, 0, 0, 1, 1, true, false},     // VAE downsample: pad right and bottom only
    {2, 9, 7, 5, 3, 1, 1, 0, 0, 0, 0, true, true},        // 1x1 skip connection
    {1, 3, 28, 28, 8, 14, 14, 0, 0, 0, 0, false, false},  // a patch embedding
};

TEST_CASE("conv2d matches the CPU for 3x3, 1x1, stride 2 and one-sided padding, batch 1 and 2, accumulating") {
    CudaBackend::Context gpu;
    gpu.set_cudnn_convolutions(false);
    std::uint32_t seed = 20;
    for (const ConvCase& c : kGeometries) {
        INFO("batch " << c.batch << " " << c.in_channels << "->" << c.out_channels << " " << c.height << "x" << c.width
                      << " kernel " << c.kernel << " stride " << c.stride << " accumulate " << c.accumulate);
        CHECK(conv_error(gpu, c, seed += 4) <= cuda_test::kHalfTolerance);
    }
}

TEST_CASE("conv2d with a folded GroupNorm (+ SiLU) matches the CPU's, whole, in bands, 3x3 and 1x1") {
    const ConvCase cases[] = {
        {2, 32, 12, 16, 20, 3, 1, 1, 1, 1, 1, true, false},   // ResBlock in_layers: eight pixels per im2col thread
        {2, 32, 12, 13, 11, 3, 1, 1, 1, 1, 1, true, true},    // out_layers, accumulating into the skip path
        {1, 16, 8, 12, 10, 3, 2, 0, 0, 1, 1, true, false},    // stride 2
        {2, 16, 9, 7, 5, 1, 1, 0, 0, 0, 0, false, false},     // 1x1: through im2col, which applies the map
    };
    for (const bool silu : {false, true}) {
        CudaBackend::Context gpu;
        gpu.set_cudnn_convolutions(false);
        std::uint32_t seed = 60;
        for (const ConvCase& c : cases) {
            INFO("batch " << c.batch << " " << c.in_channels << "->" << c.out_channels << " " << c.height << "x" << c.width
                          << " kernel " << c.kernel << " stride " << c.stride << " silu " << silu);
            CHECK(conv_error(gpu, c, seed += 6, {8, silu}) <= cuda_test::kHalfTolerance);
        }
        gpu.set_column_limit(1);  // bands: each image's map values start at its own offset
        CHECK(conv_error(gpu, ConvCase{2, 32, 40, 40, 12, 3, 1, 1, 1, 1, 1, true, false}, 90, {8, silu}) <=
              cuda_test::kHalfTolerance);
    }
}

TEST_CASE("conv2d reads an input upsampled by 2 as the CPU does, whole and in bands, mapped or not") {
    for (const bool banded : {false, true}) {
        CudaBackend::Context gpu;
        gpu.set_cudnn_convolutions(false);
        if (banded) gpu.set_column_limit(1);
        // Eight pixels per im2col thread (width 16), one (width 14), and columns past the minimum
        // limit (16 x 9 x 40 x 40: 4 bands per image when banded).
        for (const ConvCase& c : {ConvCase{2, 8, 12, 16, 6, 3, 1, 1, 1, 1, 1, true, false},
                                  ConvCase{1, 5, 10, 14, 7, 3, 1, 1, 1, 1, 1, true, true},
                                  ConvCase{2, 16, 40, 40, 12, 3, 1, 1, 1, 1, 1, true, false}})
            for (const Folded folded : {Folded{}, Folded{c.in_channels == 5 ? 5 : 4, true}}) {
                INFO("batch " << c.batch << " " << c.in_channels << "->" << c.out_channels << " " << c.height << "x"
                              << c.width << " banded " << banded << " folded " << folded.groups);
                CHECK(conv_error(gpu, c, 70, folded, 2) <= cuda_test::kHalfTolerance);
            }
    }
}

TEST_CASE("conv2d in bands of output rows (column limit) matches the CPU") {
    CudaBackend::Context gpu;
    gpu.set_cudnn_convolutions(false);
    gpu.set_column_limit(1);  // clamped to the minimum, 65536 columns: 16 x 9 x 40 x 40 needs 4 bands per image
    CHECK(gpu.column_limit() == 65536);
    for (const ConvCase& c : {ConvCase{2, 16, 40, 40, 12, 3, 1, 1, 1, 1, 1, true, false},
                              ConvCase{1, 16, 41, 37, 12, 3, 2, 0, 0, 1, 1, true, true},
                              ConvCase{2, 64, 33, 35, 8, 1, 1, 0, 0, 0, 0, true, false}}) {
        INFO("batch " << c.batch << " " << c.in_channels << "->" << c.out_channels << " " << c.height << "x" << c.width
                      << " kernel " << c.kernel << " stride " << c.stride);
        CHECK(conv_error(gpu, c, 40) <= cuda_test::kHalfTolerance);
    }
}

// Whether cuDNN serves this machine: it loads, and a context of its own runs an f16 3x3
// convolution through it (a refusal of the machine shows only when a plan is made). A machine
// cuDNN refuses is skipped with the reason; a probe that took im2col for any other reason fails.
// The probe's context keeps the tested one's counts and timings clean. Switches cuDNN on in `gpu`
// (whatever UNCLIP_CUDA_CUDNN says).
bool cudnn_here(CudaBackend::Context& gpu) {
    if (!cuda::cudnn_available()) {
        MESSAGE("cuDNN convolutions not tested: " << gpu.convolution_path());
        return false;
    }
    CudaBackend::Context probe;
    probe.set_convolution_tuning(false);
    probe.set_cudnn_convolutions(true);
    const double error = conv_error(probe, kGeometries[0], 1);
    if (probe.cudnn_convolution_calls() == 1) {
        gpu.set_cudnn_convolutions(true);
        return true;
    }
    const std::string path = probe.convolution_path();
    if (path.rfind("im2col + cuBLAS (", 0) == 0) {  // the machine refused, with the reason
        MESSAGE("cuDNN convolutions not tested: " << path);
        return false;
    }
    FAIL_CHECK("cuDNN serves this machine, yet an f16 3x3 convolution took im2col (error " << error << "): " << path);
    return false;
}

TEST_CASE("conv2d through cuDNN matches the CPU, f16 and bf16, while one-sided padding, 1x1 and fp32 weights keep im2col") {
    CudaBackend::Context gpu;
    if (!cudnn_here(gpu)) return;
    gpu.set_convolution_tuning(false);  // cuDNN wherever it serves
    gpu.prepare_convolutions();
    INFO("convolution path: " << gpu.convolution_path());  // as it is when a check fails
    CHECK(gpu.convolution_path().rfind("cuDNN 9.", 0) == 0);  // the handle was made: cuDNN serves this context
    std::uint32_t seed = 120;
    for (const DType dtype : {DType::f16, DType::bf16})
        for (const ConvCase& c : kGeometries) {
            INFO(dtype_name(dtype) << " batch " << c.batch << " " << c.in_channels << "->" << c.out_channels << " "
                                   << c.height << "x" << c.width << " kernel " << c.kernel << " stride " << c.stride);
            const std::uint64_t before = gpu.cudnn_convolution_calls();
            CHECK(conv_error(gpu, c, seed += 4, {}, 1, dtype) <= tolerance_for(dtype));
            const std::uint64_t taken = gpu.cudnn_convolution_calls() - before;
            if (c.kernel == 1 || c.pad_top != c.pad_bottom) CHECK(taken == 0);
            else if (c.kernel == 3 && dtype == DType::f16) CHECK(taken == 1);  // cuDNN has f16 3x3 algorithms
            else if (taken == 0) MESSAGE("cuDNN ranks no accurate algorithm for this geometry: im2col served it");
        }
    const std::uint64_t before = gpu.cudnn_convolution_calls();
    CHECK(conv_error(gpu, kGeometries[0], 200, {}, 1, DType::f32) <= kFp32Tolerance);
    gpu.set_cudnn_convolutions(false);
    CHECK(conv_error(gpu, kGeometries[1], 204) <= cuda_test::kHalfTolerance);
    CHECK(gpu.cudnn_convolution_calls() == before);
    CHECK(gpu.convolution_path() == "im2col + cuBLAS (cuDNN switched off)");
}

TEST_CASE("conv2d through cuDNN reads a folded GroupNorm (+ SiLU) and a 2x upsampled input as the CPU does") {
    CudaBackend::Context gpu;
    if (!cudnn_here(gpu)) return;
    INFO("convolution path: " << gpu.convolution_path());
    gpu.set_convolution_tuning(false);
    const ConvCase cases[] = {
        {2, 32, 12, 16, 20, 3, 1, 1, 1, 1, 1, true, false},  // ResBlock in_layers
        {2, 32, 12, 14, 11, 3, 1, 1, 1, 1, 1, true, true},   // out_layers, accumulating into the skip path
        {1, 16, 10, 14, 12, 3, 2, 1, 1, 1, 1, false, false}, // stride 2 (even sizes: they may be upsampled)
    };
    std::uint32_t seed = 220;
    for (const ConvCase& c : cases)
        for (const bool silu : {false, true})
            for (const int upsample : {1, 2}) {
                INFO(c.in_channels << "->" << c.out_channels << " " << c.height << "x" << c.width << " stride " << c.stride
                                   << " silu " << silu << " upsample " << upsample);
                const std::uint64_t before = gpu.cudnn_convolution_calls();
                CHECK(conv_error(gpu, c, seed += 6, {8, silu}, upsample) <= cuda_test::kHalfTolerance);
                CHECK(conv_error(gpu, c, seed += 6, {}, upsample) <= cuda_test::kHalfTolerance);
                CHECK(gpu.cudnn_convolution_calls() - before == 2);
            }
}

TEST_CASE("conv2d through cuDNN in a graph: a geometry first met while recording takes im2col, one run before takes cuDNN") {
    CudaBackend::Context gpu;
    if (!cudnn_here(gpu)) return;
    INFO("convolution path: " << gpu.convolution_path());
    gpu.set_convolution_tuning(false);
    const std::int64_t batch = 2, channels = 16, size = 24, out_channels = 8;
    const auto x = random_floats(static_cast<std::size_t>(batch * channels * size * size), 300);
    const Weights w(random_floats(static_cast<std::size_t>(out_channels * channels * 9), 301, -0.2f, 0.2f), out_channels,
                    channels * 9, DType::f16);
    const auto bias = random_floats(static_cast<std::size_t>(out_channels), 302);
    const std::int64_t out_elements = batch * out_channels * size * size;
    const DeviceFloats dx(gpu, x), dbias(gpu, bias), eager(out_elements), replayed(out_elements);
    CudaBackend::Conv2dArgs a;
    a.x = dx.get();
    a.weight = w.device.raw_data();
    a.weight_dtype = DType::f16;
    a.bias = dbias.get();
    a.batch = batch;
    a.in_channels = channels;
    a.height = a.width = size;
    a.out_channels = out_channels;
    a.kernel_h = a.kernel_w = 3;
    a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
    Scratch scratch(Device::cuda, 0);
    gpu.reserve_workspace(std::size_t{64} << 20);  // nothing grows while recording
    // im2col's and cuBLAS's kernels load before any recording (a driver may refuse to load one
    // inside it); with cuDNN off the geometry stays unseen by cuDNN.
    gpu.set_cudnn_convolutions(false);
    a.y = eager.get();
    CudaBackend::conv2d(gpu, a, scratch);
    gpu.set_cudnn_convolutions(true);

    const auto record = [&](float* y) {
        a.y = y;
        return CudaBackend::Graph::record(gpu, [&] { CudaBackend::conv2d(gpu, a, scratch); });
    };
    std::uint64_t before = gpu.cudnn_convolution_calls();
    const CudaBackend::Graph unseen = record(replayed.get());
    CHECK(gpu.cudnn_convolution_calls() == before);  // recorded through im2col
    unseen.launch(gpu);
    a.y = eager.get();
    CudaBackend::conv2d(gpu, a, scratch);
    CHECK(gpu.cudnn_convolution_calls() == before + 1);
    const auto eager_values = eager.read(gpu), unseen_values = replayed.read(gpu);
    CHECK(all_finite(eager_values));
    CHECK(relative_l2(unseen_values, eager_values) <= cuda_test::kHalfTolerance);

    before = gpu.cudnn_convolution_calls();
    const CudaBackend::Graph seen = record(replayed.get());
    CHECK(gpu.cudnn_convolution_calls() == before + 1);  // recorded through cuDNN
    const std::vector<float> poison(static_cast<std::size_t>(out_elements), std::numeric_limits<float>::quiet_NaN());
    CudaBackend::upload(gpu, poison.data(), replayed.get(), out_elements);
    seen.launch(gpu);
    const auto seen_values = replayed.read(gpu);
    CHECK(relative_l2(seen_values, eager_values) <= 1e-6);  // the same algorithm on the same inputs
}

TEST_CASE("conv2d tuning times cuDNN against im2col once per geometry, keeps the faster, and leaves y to the real run") {
    CudaBackend::Context gpu;
    if (!cudnn_here(gpu)) return;
    INFO("convolution path: " << gpu.convolution_path());
    gpu.set_convolution_tuning(true);  // the default, unless UNCLIP_CUDA_CONV_TUNING=0 is in the environment
    std::size_t eligible = 0;
    for (const ConvCase& c : kGeometries) eligible += c.kernel > 1 && c.pad_top == c.pad_bottom;
    for (const int round : {1, 2}) {
        INFO("round " << round);
        const std::uint64_t before = gpu.cudnn_convolution_calls();
        std::uint32_t seed = 400;
        // Accumulating cases too: the timed runs write a scratch output, never y.
        for (const ConvCase& c : kGeometries) CHECK(conv_error(gpu, c, seed += 4) <= cuda_test::kHalfTolerance);
        const auto timings = gpu.convolution_timings();
        CHECK(timings.size() <= eligible);  // once per geometry; one cuDNN has no algorithm for is not timed
        CHECK(timings.size() >= 4);         // the 3x3 ones
        std::uint64_t kept = 0;
        for (const CudaBackend::ConvolutionTiming& t : timings) {
            INFO(t.geometry << ": cuDNN " << t.cudnn_ms << " ms, im2col " << t.im2col_ms << " ms");
            CHECK(t.cudnn_ms > 0.0);
            CHECK(t.im2col_ms > 0.0);
            CHECK(t.cudnn == (t.cudnn_ms <= t.im2col_ms));
            kept += t.cudnn;
        }
        CHECK(gpu.cudnn_convolution_calls() - before == kept);  // the timed runs are not counted
        REQUIRE(!timings.empty());
        CHECK(timings.front().geometry == "1x5x13x11 -> 7, 3x3 stride 1 pad 1, f16");
    }
    // A second context of the process follows the first one's choices (measured once), so the
    // two compute the same bytes.
    CudaBackend::Context other;
    other.set_cudnn_convolutions(true);
    other.set_convolution_tuning(true);
    std::uint32_t seed = 500;
    for (const ConvCase& c : kGeometries) CHECK(conv_error(other, c, seed += 4) <= cuda_test::kHalfTolerance);
    const auto mine = gpu.convolution_timings(), theirs = other.convolution_timings();
    REQUIRE(theirs.size() == mine.size());
    for (std::size_t i = 0; i < mine.size(); ++i) {
        INFO(mine[i].geometry);
        CHECK(theirs[i].geometry == mine[i].geometry);
        CHECK(theirs[i].cudnn == mine[i].cudnn);
        CHECK(theirs[i].cudnn_ms == mine[i].cudnn_ms);  // adopted, not measured again
        CHECK(theirs[i].im2col_ms == mine[i].im2col_ms);
    }
}

TEST_CASE("conv2d tuning labels an upsampled or mapped input's geometry apart from the plain one") {
    CudaBackend::Context gpu;
    if (!cudnn_here(gpu)) return;
    gpu.set_convolution_tuning(true);
    const ConvCase c{1, 8, 12, 16, 8, 3, 1, 1, 1, 1, 1, true, false};
    CHECK(conv_error(gpu, c, 600) <= cuda_test::kHalfTolerance);
    CHECK(conv_error(gpu, c, 604, {4, true}) <= cuda_test::kHalfTolerance);
    CHECK(conv_error(gpu, c, 608, {}, 2) <= cuda_test::kHalfTolerance);
    std::vector<std::string> labels;
    for (const CudaBackend::ConvolutionTiming& t : gpu.convolution_timings()) labels.push_back(t.geometry);
    CHECK(labels == std::vector<std::string>{"1x8x12x16 -> 8, 3x3 stride 1 pad 1, f16",
                                             "1x8x12x16 -> 8, 3x3 stride 1 pad 1, f16, input mapped",
                                             "1x8x12x16 -> 8, 3x3 stride 1 pad 1, f16, input upsampled by 2"});
}

}  // TEST_SUITE
