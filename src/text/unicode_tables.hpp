#pragma once
// Unicode property tables for the CLIP tokenizer, generated into unicode_tables.cpp by
// src/text/data/make_unicode_tables.py. Every table is sorted by its first column.
#include <cstddef>
#include <cstdint>

namespace unclip::text::detail {

struct CodeRange {
    std::uint32_t first, last;  // inclusive
};
struct ValuedRange {
    std::uint32_t first, last;
    std::uint32_t value;
};
template <std::size_t N>
struct CodeMapping {
    std::uint32_t code;
    std::uint32_t count;  // 0..N code points in `to`
    std::uint32_t to[N];
};
struct Composition {
    std::uint32_t first, second, composite;
};

extern const CodeRange kLetterRanges[];  // general category L*: the regex's \p{L}
extern const std::size_t kLetterRangeCount;
extern const CodeRange kNumberRanges[];  // N*: \p{N}
extern const std::size_t kNumberRangeCount;
extern const CodeRange kSpaceRanges[];  // Python str.isspace()
extern const std::size_t kSpaceRangeCount;
extern const ValuedRange kCombiningClassRanges[];  // canonical combining class, non-zero only
extern const std::size_t kCombiningClassRangeCount;
extern const CodeMapping<3> kLowerCase[];  // full lower-case mapping of one code point
extern const std::size_t kLowerCaseCount;
extern const CodeMapping<4> kDecompositions[];  // full canonical decomposition (Hangul excluded)
extern const std::size_t kDecompositionCount;
extern const Composition kCompositions[];  // primary composites, sorted by (first, second)
extern const std::size_t kCompositionCount;
extern const CodeMapping<3> kTextFixes[];  // ftfy's character fixes; count 0 deletes
extern const std::size_t kTextFixCount;

}  // namespace unclip::text::detail
