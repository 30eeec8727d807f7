#pragma once
// The module instantiations that libunclip provides; including this header avoids compiling them
// again in user code.
#include "unclip/backend/cpu.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/nn/attention.hpp"
#include "unclip/nn/clip_text.hpp"
#include "unclip/nn/clip_vision.hpp"
#include "unclip/nn/mlp.hpp"
#include "unclip/nn/transformer_block.hpp"
#include "unclip/nn/conv2d.hpp"
#include "unclip/nn/group_norm.hpp"
#include "unclip/nn/layer_norm.hpp"
#include "unclip/nn/linear.hpp"
#include "unclip/nn/resblock.hpp"
#include "unclip/nn/spatial_transformer.hpp"
#include "unclip/nn/unet.hpp"
#include "unclip/nn/vae.hpp"

namespace unclip::nn {
extern template class Linear<CpuBackend, float>;
extern template class Conv2d<CpuBackend, float>;
extern template class GroupNorm<CpuBackend, float>;
extern template class ResBlock<CpuBackend, float>;
extern template class LayerNorm<CpuBackend, float>;
extern template class MultiHeadAttention<CpuBackend, float>;
extern template class SpatialTransformer<CpuBackend, float>;
extern template class UNet<CpuBackend, float>;
extern template class AutoencoderKL<CpuBackend, float>;
extern template class Mlp<CpuBackend, float>;
extern template class ResidualAttentionBlock<CpuBackend, float>;
extern template class ClipTextModel<CpuBackend, float>;
extern template class ClipVisionModel<CpuBackend, float>;
// CudaBackend: the same modules over device memory (in a build without CUDA, every primitive throws).
extern template class Linear<CudaBackend, float>;
extern template class Conv2d<CudaBackend, float>;
extern template class GroupNorm<CudaBackend, float>;
extern template class ResBlock<CudaBackend, float>;
extern template class LayerNorm<CudaBackend, float>;
extern template class MultiHeadAttention<CudaBackend, float>;
extern template class SpatialTransformer<CudaBackend, float>;
extern template class UNet<CudaBackend, float>;
extern template class AutoencoderKL<CudaBackend, float>;
extern template class Mlp<CudaBackend, float>;
extern template class ResidualAttentionBlock<CudaBackend, float>;
extern template class ClipTextModel<CudaBackend, float>;
extern template class ClipVisionModel<CudaBackend, float>;
}  // namespace unclip::nn
