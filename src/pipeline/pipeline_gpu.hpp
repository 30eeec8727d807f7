#pragma once
// The pipeline's modules on a GPU: device copies of each component's weights (one allocation per
// component, Linear/Conv2d matrices in half precision, the rest fp32), the CUDA context and one
// device scratch arena that every forward reuses.
#include <memory>
#include <optional>
#include <string>

#include "pipeline/pipeline_models.hpp"
#include "unclip/backend/cuda.hpp"

namespace unclip::pipeline {

// The weights are device tensors.
struct GpuModels : ComponentWeights, ComponentModules<CudaBackend> {
    CudaBackend::Context ctx;
    Scratch scratch{Device::cuda};
    std::string description;

    explicit GpuModels(int device) : ctx(device) {}
    // Grows the arena; waits for queued work first, since growing frees the old buffer.
    void reserve(std::size_t bytes);
    // n floats from the arena, filled from host memory (the caller holds a Scratch::Frame).
    float* stage(const float* host, std::int64_t n);
    // One module pass between host tensors: `input` goes up, fn(device input, device output) runs
    // on an arena of `module_bytes` more, and the result comes back into `output` (fp32, contiguous).
    template <class Fn>
    void run(const Tensor& input, Tensor& output, std::size_t module_bytes, Fn&& fn) {
        const auto in_count = static_cast<std::size_t>(input.numel()), out_count = static_cast<std::size_t>(output.numel());
        ctx.activate();
        reserve(module_bytes + Scratch::bytes_for<float>(in_count) + Scratch::bytes_for<float>(out_count));
        Scratch::Frame frame(scratch);
        const CView<float> device_input{stage(input.data<const float>(), input.numel()), input.shape()};
        const View<float> device_output{scratch.take<float>(out_count), output.shape()};
        fn(device_input, device_output);
        CudaBackend::download(ctx, device_output.data, output.data<float>(), output.numel());
    }
};

// Uploads `host`'s components (built on the CPU first: their weight maps know which tensors are
// matrices) to GPU `device`. bf16: fp32 matrices become bf16 instead of fp16. Throws
// Error(Status::device) without a usable GPU, Error(Status::out_of_memory) when they do not fit.
std::unique_ptr<GpuModels> load_gpu_models(const Models& host, int device, bool bf16);

}  // namespace unclip::pipeline
