// Unicode support for the CLIP tokenizer; the tables come from unicode_tables.cpp.
#include "text/unicode.hpp"

#include <algorithm>
#include <cstdint>

#include "text/unicode_tables.hpp"

namespace unclip::text::detail {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

bool in_ranges(const CodeRange* table, std::size_t count, char32_t cp) noexcept {
    const CodeRange* end = table + count;
    const CodeRange* it = std::upper_bound(table, end, cp, [](char32_t c, const CodeRange& r) { return c < r.first; });
    return it != table && cp <= (it - 1)->last;
}

template <std::size_t N>
const CodeMapping<N>* find_mapping(const CodeMapping<N>* table, std::size_t count, char32_t cp) noexcept {
    const CodeMapping<N>* end = table + count;
    const CodeMapping<N>* it =
        std::lower_bound(table, end, cp, [](const CodeMapping<N>& m, char32_t c) { return m.code < c; });
    return it != end && it->code == cp ? it : nullptr;
}

std::uint32_t combining_class(char32_t cp) noexcept {
    const ValuedRange* table = kCombiningClassRanges;
    const ValuedRange* end = table + kCombiningClassRangeCount;
    const ValuedRange* it =
        std::upper_bound(table, end, cp, [](char32_t c, const ValuedRange& r) { return c < r.first; });
    return it != table && cp <= (it - 1)->last ? (it - 1)->value : 0;
}

// Hangul syllables decompose and compose arithmetically (Unicode 3.12).
constexpr char32_t kHangulS = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr char32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr char32_t kHangulNCount = kHangulVCount * kHangulTCount, kHangulSCount = kHangulLCount * kHangulNCount;

void decompose(char32_t cp, std::u32string& out) {
    if (cp >= kHangulS && cp < kHangulS + kHangulSCount) {
        const char32_t s = cp - kHangulS;
        out.push_back(kHangulL + s / kHangulNCount);
        out.push_back(kHangulV + (s % kHangulNCount) / kHangulTCount);
        if (s % kHangulTCount != 0) out.push_back(kHangulT + s % kHangulTCount);
        return;
    }
    if (const auto* m = find_mapping(kDecompositions, kDecompositionCount, cp)) {
        for (std::uint32_t k = 0; k < m->count; ++k) out.push_back(m->to[k]);
        return;
    }
    out.push_back(cp);
}

char32_t compose_pair(char32_t first, char32_t second) noexcept {
    if (first >= kHangulL && first < kHangulL + kHangulLCount && second >= kHangulV &&
        second < kHangulV + kHangulVCount)
        return kHangulS + ((first - kHangulL) * kHangulVCount + (second - kHangulV)) * kHangulTCount;
    if (first >= kHangulS && first < kHangulS + kHangulSCount && (first - kHangulS) % kHangulTCount == 0 &&
        second > kHangulT && second < kHangulT + kHangulTCount)
        return first + (second - kHangulT);
    const Composition* end = kCompositions + kCompositionCount;
    const Composition* it = std::lower_bound(kCompositions, end, std::make_pair(first, second),
                                             [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
                                                 return c.first != key.first ? c.first < key.first
                                                                             : c.second < key.second;
                                             });
    return it != end && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace

std::u32string decode_utf8(std::string_view bytes) {
    std::u32string out;
    out.reserve(bytes.size());
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t n = bytes.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char b = p[i];
        if (b < 0x80) {
            out.push_back(b);
            ++i;
            continue;
        }
        int len = 0;
        char32_t cp = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte (excludes overlongs, surrogates)
        if (b >= 0xC2 && b <= 0xDF) len = 2, cp = b & 0x1F;
        else if (b >= 0xE0 && b <= 0xEF) len = 3, cp = b & 0x0F, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
        else if (b >= 0xF0 && b <= 0xF4) len = 4, cp = b & 0x07, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
        if (len == 0) {
            out.push_back(kReplacement);
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        bool ok = true;
        for (int k = 1; k < len; ++k, ++j) {
            const unsigned char lower = k == 1 ? lo : 0x80, upper = k == 1 ? hi : 0xBF;
            if (j >= n || p[j] < lower || p[j] > upper) {
                ok = false;
                break;
            }
            cp = (cp << 6) | (p[j] & 0x3F);
        }
        // A truncated sequence is replaced once, and decoding resumes at the offending byte.
        out.push_back(ok ? cp : kReplacement);
        i = j;
    }
    return out;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string encode_utf8(std::u32string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char32_t cp : text) append_utf8(out, cp);
    return out;
}

bool is_letter(char32_t cp) noexcept { return in_ranges(kLetterRanges, kLetterRangeCount, cp); }
bool is_number(char32_t cp) noexcept { return in_ranges(kNumberRanges, kNumberRangeCount, cp); }
bool is_space(char32_t cp) noexcept {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    return in_ranges(kSpaceRanges, kSpaceRangeCount, cp);
}

std::u32string apply_text_fixes(std::u32string_view text) {
    std::u32string out;
    out.reserve(text.size());
    for (const char32_t cp : text) {
        if (const auto* m = find_mapping(kTextFixes, kTextFixCount, cp))
            for (std::uint32_t k = 0; k < m->count; ++k) out.push_back(m->to[k]);
        else
            out.push_back(cp);
    }
    return out;
}

std::u32string nfc(std::u32string_view text) {
    std::u32string d;
    d.reserve(text.size());
    for (const char32_t cp : text) decompose(cp, d);
    // Canonical ordering: stable sort of each run of non-starters by combining class.
    for (std::size_t i = 0; i < d.size();) {
        if (combining_class(d[i]) == 0) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < d.size() && combining_class(d[j]) != 0) ++j;
        std::stable_sort(d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
                         [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
        i = j;
    }
    // Canonical composition: each character joins the last starter unless blocked by an
    // intervening character of equal or higher class.
    std::u32string out;
    out.reserve(d.size());
    std::size_t starter = std::u32string::npos;
    std::uint32_t last_class = 0;
    for (const char32_t cp : d) {
        const std::uint32_t cls = combining_class(cp);
        if (starter != std::u32string::npos) {
            const bool blocked = out.size() - 1 != starter && (last_class == 0 || last_class >= cls);
            if (!blocked) {
                if (const char32_t composite = compose_pair(out[starter], cp)) {
                    out[starter] = composite;
                    continue;
                }
            }
        }
        if (cls == 0) {
            starter = out.size();
            last_class = 0;
        } else {
            last_class = cls;
        }
        out.push_back(cp);
    }
    return out;
}

std::u32string collapse_whitespace(std::u32string_view text) {
    std::u32string out;
    out.reserve(text.size());
    bool pending_space = false;
    for (const char32_t cp : text) {
        if (is_space(cp)) {
            pending_space = !out.empty();
            continue;
        }
        if (pending_space) out.push_back(U' ');
        pending_space = false;
        out.push_back(cp);
    }
    return out;
}

std::u32string to_lower(std::u32string_view text) {
    std::u32string out;
    out.reserve(text.size());
    for (const char32_t cp : text) {
        if (cp < 0x80) {
            out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        } else if (const auto* m = find_mapping(kLowerCase, kLowerCaseCount, cp)) {
            for (std::uint32_t k = 0; k < m->count; ++k) out.push_back(m->to[k]);
        } else {
            out.push_back(cp);
        }
    }
    return out;
}

}  // namespace unclip::text::detail
