// Explicit instantiation of the prior for the CPU backend (see include/unclip/nn/prior_transformer.hpp).
#include "unclip/nn/prior_transformer.hpp"

#include "unclip/nn/instances.hpp"

namespace unclip::nn {
template class PriorTransformer<CpuBackend, float>;
}  // namespace unclip::nn
