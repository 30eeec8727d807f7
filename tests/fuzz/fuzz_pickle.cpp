// Fuzz target: the restricted unpickler behind .ckpt files, fed data.pkl bytes directly.
#include <unordered_set>

#include "fuzz_support.hpp"
#include "io/pickle.hpp"
#include "unclip/io/ckpt.hpp"

namespace {
using unclip::io::pickle::Value;

// Walks the value tree as a consumer would (bounded: memo sharing can make a small pickle a large
// DAG). Deep recursion here is a finding: the interpreter promises bounded nesting.
void walk(const Value& v, int depth, std::size_t& budget) {
    if (budget == 0) return;
    --budget;
    if (depth > unclip::io::kMaxPickleNesting + 1) std::abort();
    for (const auto& item : v.items) walk(*item, depth + 1, budget);
    for (const auto& [key, value] : v.entries) {
        walk(*key, depth + 1, budget);
        walk(*value, depth + 1, budget);
    }
    if (v.tensor && v.tensor->size.size() != v.tensor->stride.size()) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    unclip::fuzz::expect_error_or_success([&] {
        const auto root = unclip::io::pickle::load(
            std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.ckpt");
        std::size_t budget = 100000;
        walk(*root, 0, budget);
    });
    return 0;
}
