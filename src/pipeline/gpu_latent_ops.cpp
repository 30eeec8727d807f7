#include "pipeline/gpu_latent_ops.hpp"

#include <string>

#include "unclip/error.hpp"

namespace unclip::pipeline {

float* CudaLatentOps::buffer(std::size_t n) {
    if (n > pool_floats_ - used_floats_)
        throw Error(Status::internal, "GPU sampling: buffer " + std::to_string(buffers_ + 1) + " of " + std::to_string(n) +
                                          " floats does not fit the " + std::to_string(pool_floats_) +
                                          " reserved (" + std::to_string(used_floats_) + " taken)");
    float* p = pool_ + used_floats_;
    used_floats_ += n;
    ++buffers_;
    return p;
}

void CudaLatentOps::upload(const float* host, float* dst, std::size_t n) {
    CudaBackend::upload(ctx_, host, dst, static_cast<std::int64_t>(n));
}

const float* CudaLatentOps::host_view(const float* src, std::size_t n, std::vector<float>& staging) {
    staging.resize(n);
    CudaBackend::download(ctx_, src, staging.data(), static_cast<std::int64_t>(n));
    return staging.data();
}

void CudaLatentOps::step_queued() {
    // Wait for the step before this one, not this one: the GPU always has a step queued.
    fences_[steps_queued_ % 2].mark(ctx_);
    ++steps_queued_;
    fences_[steps_queued_ % 2].wait();
}

}  // namespace unclip::pipeline
