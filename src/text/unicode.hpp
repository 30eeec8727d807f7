#pragma once
// The Unicode operations behind CLIP text cleanup, over UTF-32 code points. Private to the library.
#include <string>
#include <string_view>

namespace unclip::text::detail {

// Decodes UTF-8; each maximal invalid subsequence becomes one U+FFFD (as Python's
// bytes.decode(errors="replace") and the WHATWG decoder do).
std::u32string decode_utf8(std::string_view bytes);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view text);

bool is_letter(char32_t cp) noexcept;  // \p{L}
bool is_number(char32_t cp) noexcept;  // \p{N}
bool is_space(char32_t cp) noexcept;   // Python str.isspace()

// ftfy's per-character fixes (control characters, ligatures, full-width forms, curly quotes).
std::u32string apply_text_fixes(std::u32string_view text);
// Unicode Normalization Form C.
std::u32string nfc(std::u32string_view text);
// Whitespace runs -> one space, ends stripped (Python " ".join(text.split())).
std::u32string collapse_whitespace(std::u32string_view text);
// Full per-character lower-case mapping (no context-dependent rules).
std::u32string to_lower(std::u32string_view text);

}  // namespace unclip::text::detail
