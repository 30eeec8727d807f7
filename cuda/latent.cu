// The samplers' element-wise updates on device memory (unclip/backend/latent_update.hpp), and the
// fence that keeps a sampling loop's host at most a step ahead of its queue. This file is compiled
// with --fmad=false: each multiply and add rounds on its own, as the formulas are written.
#include <string>

#include "check.cuh"
#include "context.cuh"
#include "unclip/backend/cuda.hpp"
#include "unclip/backend/latent_update.hpp"
#include "unclip/error.hpp"

namespace unclip {
namespace {
using backend::LatentUpdate;
using backend::LatentUpdateArgs;
using cuda::first_index;
using cuda::grid_stride;

constexpr int kThreads = 256;

template <LatentUpdate K>
__global__ void latent_update_kernel(const LatentUpdateArgs u) {
    for (std::int64_t i = first_index(); i < u.n; i += grid_stride()) u.out[i] = backend::latent_update_at<K>(u, i);
}

struct DeviceLaunch {
    const LatentUpdateArgs& args;
    cudaStream_t stream;
    template <LatentUpdate K>
    void run() const {
        latent_update_kernel<K><<<cuda::blocks_for(args.n, kThreads), kThreads, 0, stream>>>(args);
    }
};
}  // namespace

void CudaBackend::latent_update(const Context& ctx, const backend::LatentUpdateArgs& args) {
    if (args.n <= 0) return;
    const DeviceLaunch launch{args, ctx.state().stream};
    if (!backend::dispatch_latent_update(args.kind, launch))
        throw Error(Status::invalid_argument,
                    "CudaBackend::latent_update: unknown kind " + std::to_string(static_cast<int>(args.kind)));
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

struct CudaBackend::Fence::State {
    cudaEvent_t event = nullptr;
    ~State() {
        if (event) cudaEventDestroy(event);
    }
};

CudaBackend::Fence::Fence() noexcept = default;
CudaBackend::Fence::~Fence() = default;
CudaBackend::Fence::Fence(Fence&&) noexcept = default;
CudaBackend::Fence& CudaBackend::Fence::operator=(Fence&&) noexcept = default;

void CudaBackend::Fence::mark(const Context& ctx) {
    if (!state_) {
        auto state = std::make_unique<State>();
        UNCLIP_CUDA_CHECK(cudaEventCreateWithFlags(&state->event, cudaEventDisableTiming));
        state_ = std::move(state);
    }
    UNCLIP_CUDA_CHECK(cudaEventRecord(state_->event, ctx.state().stream));
}

void CudaBackend::Fence::wait() const {
    if (state_) UNCLIP_CUDA_CHECK(cudaEventSynchronize(state_->event));
}

}  // namespace unclip
