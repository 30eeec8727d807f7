#include "sampling/latent_ops.hpp"

#include <algorithm>
#include <string>

#include "unclip/error.hpp"

namespace unclip::sampling::detail {

namespace {
struct HostLoop {
    const backend::LatentUpdateArgs& args;
    template <backend::LatentUpdate K>
    void run() const {
        for (std::int64_t i = 0; i < args.n; ++i) args.out[i] = backend::latent_update_at<K>(args, i);
    }
};
}  // namespace

void update_on_host(const backend::LatentUpdateArgs& args) {
    const HostLoop loop{args};
    if (!backend::dispatch_latent_update(args.kind, loop))
        throw Error(Status::internal, "latent update: unknown kind " + std::to_string(static_cast<int>(args.kind)));
}

float* HostLatentOps::buffer(std::size_t n) {
    if (buffers_.size() >= max_buffers_)
        throw Error(Status::internal, "sampling: a run took more than " + std::to_string(max_buffers_) +
                                          " latent buffers");
    return buffers_.emplace_back(n, 0.0f).data();
}

void HostLatentOps::update(const backend::LatentUpdateArgs& args) { update_on_host(args); }

void HostLatentOps::upload(const float* host, float* dst, std::size_t n) { std::copy(host, host + n, dst); }

}  // namespace unclip::sampling::detail
