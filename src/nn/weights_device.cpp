// Device copies of weight maps for modules over CudaBackend.
#include "nn/weights_device.hpp"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "unclip/backend/cuda.hpp"
#include "unclip/nn/weights.hpp"

namespace unclip::nn {
namespace {

constexpr std::size_t kDeviceAlignment = 256;

std::size_t aligned(std::size_t bytes) { return (bytes + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment; }

// The dtype a tensor gets on the device: matrices keep a half-precision file type (fp32 ones are
// rounded to fp16, or bf16 on request), everything else is fp32.
DType device_dtype(const WeightMap& host, const std::string& name, DType file, bool bf16) {
    if (!host.requested_as_matrix(name)) return DType::f32;
    if (file == DType::f16 || file == DType::bf16) return file;
    return bf16 ? DType::bf16 : DType::f16;
}
}  // namespace

std::vector<std::vector<std::string>> detail::upload_groups(const WeightMap& host, bool bf16) {
    const auto same_matrix = [&](const std::string& a, const std::string& b) {
        const Tensor* ta = host.find(a);
        const Tensor* tb = host.find(b);
        return ta && tb && host.requested_as_matrix(a) && host.requested_as_matrix(b) && ta->shape() == tb->shape() &&
               device_dtype(host, a, ta->dtype(), bf16) == device_dtype(host, b, tb->dtype(), bf16);
    };
    // The q, k, v triples first, by their to_q; then every tensor in name order, a triple where its
    // to_q stands (its to_k, which sorts before, goes with it).
    const std::string q_suffix = "to_q.weight";
    std::map<std::string, std::vector<std::string>> triples;
    std::set<std::string> in_triple;
    for (const auto& [name, tensor] : host.tensors()) {
        if (name.size() < q_suffix.size() || name.compare(name.size() - q_suffix.size(), q_suffix.size(), q_suffix) != 0)
            continue;
        const std::string prefix = name.substr(0, name.size() - q_suffix.size());
        const std::string k = prefix + "to_k.weight", v = prefix + "to_v.weight";
        if (tensor.shape().rank() == 2 && tensor.dim(0) == tensor.dim(1) && same_matrix(name, k) && same_matrix(name, v)) {
            triples[name] = {name, k, v};
            in_triple.insert({name, k, v});
        }
    }
    std::vector<std::vector<std::string>> groups;
    for (const auto& [name, tensor] : host.tensors()) {
        if (!host.requested(name)) continue;
        if (const auto triple = triples.find(name); triple != triples.end()) groups.push_back(triple->second);
        else if (!in_triple.count(name)) groups.push_back({name});
    }
    return groups;
}

WeightMap upload_weights(const WeightMap& host, bool bf16) {
    const std::vector<std::vector<std::string>> groups = detail::upload_groups(host, bf16);
    const auto bytes_of = [&](const std::string& name) {
        const Tensor& t = *host.find(name);
        return static_cast<std::size_t>(t.numel()) * dtype_size(device_dtype(host, name, t.dtype(), bf16));
    };
    std::size_t total = 0;
    for (const auto& g : groups) {
        std::size_t bytes = 0;
        for (const auto& name : g) bytes += bytes_of(name);
        total += aligned(bytes);
    }
    WeightMap device;
    if (total == 0) return device;
    void* base = cuda::allocate(total);
    const std::shared_ptr<const void> keep_alive(base, [](const void* p) { cuda::deallocate(const_cast<void*>(p)); });
    auto* cursor = static_cast<unsigned char*>(base);
    for (const auto& g : groups) {
        auto* group_start = cursor;
        for (const auto& name : g) {
            const Tensor& tensor = *host.find(name);
            const DType dtype = device_dtype(host, name, tensor.dtype(), bf16);
            const Tensor source = tensor.dtype() == dtype ? tensor.contiguous() : tensor.contiguous().to(dtype);
            cuda::copy(cursor, source.raw_data(), source.nbytes(), cuda::CopyKind::host_to_device);
            device.insert(name, Tensor::borrow(cursor, dtype, tensor.shape(), keep_alive, Device::cuda));
            cursor += source.nbytes();
        }
        cursor = group_start + aligned(static_cast<std::size_t>(cursor - group_start));
    }
    return device;
}

}  // namespace unclip::nn
