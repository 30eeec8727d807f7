#pragma once
// Where a sampling run keeps its latents and how it updates them. The sampler loops
// (samplers.cpp, uni_pc.cpp) and the CFG denoiser read no latent value themselves: they allocate
// buffers and queue LatentUpdates through a LatentOps, so the same loops run on host arrays
// (HostLatentOps) or on device memory (the pipeline's GPU ops), where nothing returns to the host
// between steps.
#include <cstddef>
#include <deque>
#include <initializer_list>
#include <vector>

#include "unclip/backend/latent_update.hpp"

namespace unclip::sampling::detail {

// Buffers one sampler run takes at most (UniPC of order 3 takes 12); the GPU reserves room for
// them before the loop, so that nothing is allocated inside it.
inline constexpr std::size_t kMaxLatentBuffers = 16;

class LatentOps {
public:
    virtual ~LatentOps() = default;
    // n floats in this memory (unspecified until written), kept for the object's lifetime.
    // Throws Error(Status::internal) past the ops' limit (HostLatentOps: a buffer count; the
    // GPU's: the space reserved).
    virtual float* buffer(std::size_t n) = 0;
    virtual void update(const backend::LatentUpdateArgs& args) = 0;
    // host -> this memory; the host buffer may be reused once it returns.
    virtual void upload(const float* host, float* dst, std::size_t n) = 0;
    // The n values at src readable on the host: src itself, or a copy in `staging` (waiting for them).
    virtual const float* host_view(const float* src, std::size_t n, std::vector<float>& staging) = 0;
    // A step's work has been queued: the ops may wait here so that the queue runs at most a step
    // ahead of the caller (a step callback then reports, and cancels, work that has run).
    virtual void step_queued() {}

    // update() of `kind` over n values into out, from at most five inputs and four constants (in
    // LatentUpdateArgs' order); throws Error(Status::internal) for more.
    void apply(backend::LatentUpdate kind, float* out, std::size_t n, std::initializer_list<const float*> inputs,
               std::initializer_list<float> constants = {});
};

class HostLatentOps final : public LatentOps {
public:
    explicit HostLatentOps(std::size_t max_buffers = kMaxLatentBuffers) noexcept : max_buffers_(max_buffers) {}
    float* buffer(std::size_t n) override;
    void update(const backend::LatentUpdateArgs& args) override;
    void upload(const float* host, float* dst, std::size_t n) override;
    const float* host_view(const float* src, std::size_t, std::vector<float>&) override { return src; }

private:
    std::size_t max_buffers_;
    std::deque<std::vector<float>> buffers_;  // a deque: the data stays where it is as it grows
};

// The update on host arrays (single-threaded: results never depend on a thread count).
void update_on_host(const backend::LatentUpdateArgs& args);

}  // namespace unclip::sampling::detail
