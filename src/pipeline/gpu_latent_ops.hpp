#pragma once
// The sampling loop's latents in device memory: LatentOps over a CUDA context, its buffers cut
// from one device block reserved before the loop, its updates queued as kernels. Nothing waits
// for the GPU except host_view() (a step callback that reads the latents) and step_queued(), which
// keeps the host at most one step ahead of the queue.
#include <cstddef>
#include <vector>

#include "sampling/latent_ops.hpp"
#include "unclip/backend/cuda.hpp"

namespace unclip::pipeline {

class CudaLatentOps final : public sampling::detail::LatentOps {
public:
    // pool: `pool_floats` floats of device memory that outlive this object.
    CudaLatentOps(const CudaBackend::Context& ctx, float* pool, std::size_t pool_floats) noexcept
        : ctx_(ctx), pool_(pool), pool_floats_(pool_floats) {}
    float* buffer(std::size_t n) override;
    void update(const backend::LatentUpdateArgs& args) override { CudaBackend::latent_update(ctx_, args); }
    void upload(const float* host, float* dst, std::size_t n) override;
    const float* host_view(const float* src, std::size_t n, std::vector<float>& staging) override;
    void step_queued() override;

private:
    const CudaBackend::Context& ctx_;
    float* pool_;
    std::size_t pool_floats_, used_floats_ = 0, buffers_ = 0;
    CudaBackend::Fence fences_[2];
    std::size_t steps_queued_ = 0;
};

}  // namespace unclip::pipeline
