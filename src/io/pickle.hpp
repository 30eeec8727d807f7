#pragma once
// The restricted pickle interpreter behind CkptFile: it turns data.pkl into a tree of plain
// values, building tensors only as (storage, offset, size, stride) records. No Python object is
// ever constructed and nothing is called; see ckpt.hpp for the allowed globals.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unclip::io::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct StorageRef {
    std::string type;     // "FloatStorage", "HalfStorage", ...
    std::string key;      // entry name under <root>/data/
    std::int64_t numel = 0;
};

struct TensorRef {
    std::shared_ptr<const StorageRef> storage;
    std::int64_t offset = 0;  // in elements
    std::vector<std::int64_t> size, stride;
};

struct Value {
    enum class Kind { none, boolean, integer, real, string, bytes, tuple, list, dict, global, storage, tensor, opaque };
    Kind kind = Kind::none;
    std::int64_t integer = 0;
    double real = 0;
    std::string text;                  // string, bytes; "module.name" for global and opaque
    std::vector<ValuePtr> items;       // tuple, list
    std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // dict, in insertion order
    std::shared_ptr<const StorageRef> storage;
    std::shared_ptr<const TensorRef> tensor;
    int depth = 0;                     // container nesting, bounded by kMaxPickleNesting
    bool nested = false;               // held by a container: no longer mutable (no cycles)
};

// Runs the pickle in `bytes`; `label` names the source in errors. Throws Error(Status::bad_model).
ValuePtr load(std::string_view bytes, const std::string& label);

}  // namespace unclip::io::pickle
