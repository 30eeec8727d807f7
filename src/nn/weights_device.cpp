// Device copies of weight maps for modules over CudaBackend.
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

WeightMap upload_weights(const WeightMap& host, bool bf16) {
    std::size_t total = 0;
    for (const auto& [name, tensor] : host.tensors()) {
        if (!host.requested(name)) continue;
        total += aligned(static_cast<std::size_t>(tensor.numel()) * dtype_size(device_dtype(host, name, tensor.dtype(), bf16)));
    }
    WeightMap device;
    if (total == 0) return device;
    void* base = cuda::allocate(total);
    const std::shared_ptr<const void> keep_alive(base, [](const void* p) { cuda::deallocate(const_cast<void*>(p)); });
    auto* cursor = static_cast<unsigned char*>(base);
    for (const auto& [name, tensor] : host.tensors()) {
        if (!host.requested(name)) continue;
        const DType dtype = device_dtype(host, name, tensor.dtype(), bf16);
        const Tensor source = tensor.dtype() == dtype ? tensor.contiguous() : tensor.contiguous().to(dtype);
        cuda::copy(cursor, source.raw_data(), source.nbytes(), cuda::CopyKind::host_to_device);
        device.insert(name, Tensor::borrow(cursor, dtype, tensor.shape(), keep_alive, Device::cuda));
        cursor += aligned(source.nbytes());
    }
    return device;
}

}  // namespace unclip::nn
