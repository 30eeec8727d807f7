#pragma once
// PyTorch .ckpt / .pt / .bin files (the zip serialisation of torch >= 1.6): a zip archive with
// <root>/data.pkl, a pickle of the saved object, and <root>/data/<key>, one entry per storage.
//
// The pickle is read by a restricted interpreter that builds plain data only: it knows the
// opcodes a state dict uses and a short list of globals (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.<Type>Storage, the numpy scalar
// and dtype reconstructors and _codecs.encode that training metadata uses). Nothing in the file
// is ever executed; any other global or opcode is an error naming it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/tensor.hpp"

namespace unclip::io {

// Limits that keep a hostile pickle from exhausting memory.
inline constexpr std::size_t kMaxPickleBytes = std::size_t{512} << 20;
inline constexpr int kMaxPickleNesting = 64;

struct CkptEntry {
    std::string name;             // key in the state dict
    std::string dtype_name;       // safetensors spelling of the storage type: "F32", "I32", ...
    std::optional<DType> dtype;   // set for F32, F16 and BF16
    std::vector<std::int64_t> dims, strides;  // strides in elements
};

// Opens the archive, checks every storage entry (stored, inside the file, sized numel x element
// size) and every tensor (its elements inside its storage); afterwards immutable and shareable
// between threads. Tensors are views into the mapped file.
class UNCLIP_CXX_API CkptFile {
public:
    // Throws Error(Status::io) if the file cannot be read, Error(Status::bad_model) naming the file
    // and the culprit otherwise: not a zip or truncated, no data.pkl, a compressed or out-of-range
    // storage entry, a pickle opcode or global outside the allowed set, a malformed tensor, or
    // nesting past kMaxPickleNesting.
    static CkptFile open(const std::string& path);

    const std::string& path() const noexcept;
    // The tensors of the state dict ("state_dict" entry of the saved dict, or the saved dict
    // itself), in file order. Values that are not tensors (global_step, ...) are skipped.
    const std::vector<CkptEntry>& entries() const noexcept;
    const CkptEntry* find(std::string_view name) const noexcept;

    // A view of the tensor, zero-copy unless the data is misaligned for its dtype. Throws
    // Error(Status::bad_model) for an unknown name, a storage type other than Float/Half/BFloat16
    // or more than kMaxRank dimensions, naming the file and the tensor.
    Tensor get(std::string_view name) const;

private:
    struct State;
    explicit CkptFile(std::shared_ptr<const State> state) : state_(std::move(state)) {}
    std::shared_ptr<const State> state_;
};

}  // namespace unclip::io
