#pragma once
// safetensors files: a validating, memory-mapped reader that hands out zero-copy views, and a
// streaming writer. Format: u64 little-endian header size N, N bytes of JSON, then the data section;
// offsets in the header are relative to the data section.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/tensor.hpp"

namespace unclip::io {

inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1000 * 1000;

struct SafetensorsEntry {
    std::string name;
    std::string dtype_name;       // as written in the file: "F32", "I64", ...
    std::optional<DType> dtype;   // set for F32, F16 and BF16, the dtypes unclip computes with
    std::vector<std::int64_t> dims;  // any rank; tensors need rank <= kMaxRank
    std::uint64_t begin = 0, end = 0;  // byte range inside the data section
};

// Opens and validates the whole header up front; afterwards the object is immutable and may be
// shared by several threads. Views returned by get() keep the mapping alive on their own.
class UNCLIP_CXX_API SafetensorsFile {
public:
    // Throws Error(Status::io) if the file cannot be read, Error(Status::bad_model) naming the file,
    // the tensor and the reason if the header is malformed: size past the end of the file or over
    // kMaxSafetensorsHeaderBytes, JSON not well-formed or not UTF-8, a duplicate name, an unknown
    // dtype, a negative or overflowing shape, offsets outside the data section, reversed or
    // overlapping, or a byte range that disagrees with shape x dtype size.
    static SafetensorsFile open(const std::string& path);
    // The same checks on a buffer the caller owns and keeps alive; `label` names it in errors.
    static SafetensorsFile from_memory(const void* data, std::size_t size, std::string label,
                                       std::shared_ptr<const void> keep_alive = nullptr);

    const std::string& path() const noexcept;
    // Entries in data-section order.
    const std::vector<SafetensorsEntry>& entries() const noexcept;
    const SafetensorsEntry* find(std::string_view name) const noexcept;
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
    const std::map<std::string, std::string>& metadata() const noexcept;

    // A read-only view of the tensor (zero-copy; copied only when the file's data is not aligned
    // for its dtype). Throws Error(Status::bad_model) for an unknown name, a dtype other than
    // F32/F16/BF16 or more than kMaxRank dimensions, each naming the file and tensor.
    Tensor get(std::string_view name) const;

private:
    struct State;
    explicit SafetensorsFile(std::shared_ptr<const State> state) : state_(std::move(state)) {}
    std::shared_ptr<const State> state_;
};

// Writes a safetensors file. Tensors are declared first and their bytes streamed at finish(), so
// a multi-gigabyte file never needs to be in memory at once. The file appears atomically: data
// goes to "<path>.partial", renamed over `path` on success.
class UNCLIP_CXX_API SafetensorsWriter {
public:
    // Fills `dst` with `bytes` bytes of the tensor's data, starting at byte `offset` of the tensor.
    using Producer = std::function<void(std::byte* dst, std::size_t offset, std::size_t bytes)>;

    explicit SafetensorsWriter(std::string path);
    // Throws Error(Status::invalid_argument) for an empty or duplicate name or an undefined tensor.
    void add(const std::string& name, const Tensor& tensor);
    void add(const std::string& name, DType dtype, const Shape& shape, Producer producer);
    void set_metadata(const std::string& key, const std::string& value);
    // Writes everything; throws Error(Status::io) naming the path on any write failure.
    void finish();

private:
    struct Pending {
        std::string name;
        DType dtype;
        Shape shape;
        Producer producer;
    };
    std::string path_;
    std::vector<Pending> pending_;
    std::map<std::string, std::string> metadata_;
    bool finished_ = false;
};

}  // namespace unclip::io
