#include "sampling/latent_ops.hpp"

#include <algorithm>
#include <iterator>
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

void LatentOps::apply(backend::LatentUpdate kind, float* out, std::size_t n, std::initializer_list<const float*> inputs,
                      std::initializer_list<float> constants) {
    backend::LatentUpdateArgs args;
    if (inputs.size() > std::size(args.in) || constants.size() > std::size(args.c))
        throw Error(Status::internal, "sampling: an update with " + std::to_string(inputs.size()) + " inputs and " +
                                          std::to_string(constants.size()) + " constants");
    args.kind = kind;
    args.out = out;
    args.n = static_cast<std::int64_t>(n);
    std::copy(inputs.begin(), inputs.end(), args.in);
    std::copy(constants.begin(), constants.end(), args.c);
    update(args);
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
