// Explicit instantiations: the module templates compile once here for the CPU backend, and the
// headers' extern declarations keep users' builds from compiling them again.
#include "unclip/nn/instances.hpp"

namespace unclip::nn {
template class Linear<CpuBackend, float>;
template class Conv2d<CpuBackend, float>;
template class GroupNorm<CpuBackend, float>;
template class ResBlock<CpuBackend, float>;
template class LayerNorm<CpuBackend, float>;
template class MultiHeadAttention<CpuBackend, float>;
template class SpatialTransformer<CpuBackend, float>;
template class UNet<CpuBackend, float>;
template class AutoencoderKL<CpuBackend, float>;
template class Mlp<CpuBackend, float>;
template class ResidualAttentionBlock<CpuBackend, float>;
template class ClipTextModel<CpuBackend, float>;
template class ClipVisionModel<CpuBackend, float>;
// CudaBackend: the same modules over device memory (in a build without CUDA, every primitive throws).
template class Linear<CudaBackend, float>;
template class Conv2d<CudaBackend, float>;
template class GroupNorm<CudaBackend, float>;
template class ResBlock<CudaBackend, float>;
template class LayerNorm<CudaBackend, float>;
template class MultiHeadAttention<CudaBackend, float>;
template class SpatialTransformer<CudaBackend, float>;
template class UNet<CudaBackend, float>;
template class AutoencoderKL<CudaBackend, float>;
template class Mlp<CudaBackend, float>;
template class ResidualAttentionBlock<CudaBackend, float>;
template class ClipTextModel<CudaBackend, float>;
template class ClipVisionModel<CudaBackend, float>;
}  // namespace unclip::nn
