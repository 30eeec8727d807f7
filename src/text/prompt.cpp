// ComfyUI prompt weighting and chunking (comfy/sd1_clip.py token_weights, tokenize_with_weights),
// re-implemented from its documented behaviour.
#include "unclip/text/prompt.hpp"

#include <charconv>
#include <cmath>

namespace unclip::text {
namespace {

// ComfyUI hides escaped parentheses from the parser behind two control characters and restores
// them before tokenising.
constexpr std::string_view kEscapedClose("\0\1", 2), kEscapedOpen("\0\2", 2);

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
        s.replace(pos, from.size(), to);
    return s;
}

// Top-level plain runs and '(...)' groups. An unmatched ')' drives the depth below zero, after
// which parentheses are plain text until the depth is back to zero (ComfyUI parse_parentheses).
std::vector<std::string> split_groups(std::string_view text) {
    std::vector<std::string> pieces;
    std::string current;
    long depth = 0;
    for (const char c : text) {
        if (c == '(') {
            if (depth == 0) {
                if (!current.empty()) pieces.push_back(current);
                current = "(";
            } else {
                current += c;
            }
            ++depth;
        } else if (c == ')') {
            --depth;
            if (depth == 0) {
                pieces.push_back(current + ")");
                current.clear();
            } else {
                current += c;
            }
        } else {
            current += c;
        }
    }
    if (!current.empty()) pieces.push_back(current);
    return pieces;
}

// Python's recursion limit stops ComfyUI near this depth too; here it guards the C++ stack.
constexpr int kMaxNesting = 500;

void weighted_segments(std::string_view text, double weight, std::vector<WeightedText>& out, int depth) {
    if (depth > kMaxNesting)
        throw Error(Status::invalid_argument,
                    "prompt: parentheses are nested deeper than " + std::to_string(kMaxNesting) + " levels");
    for (std::string& piece : split_groups(text)) {
        if (piece.size() >= 2 && piece.front() == '(' && piece.back() == ')') {
            std::string inner = piece.substr(1, piece.size() - 2);
            double w = weight * 1.1;
            const std::size_t colon = inner.rfind(':');
            double value = 0;
            if (colon != std::string::npos && colon > 0 && parse_prompt_weight(std::string_view(inner).substr(colon + 1), value)) {
                w = value;
                inner.resize(colon);
            }
            weighted_segments(inner, w, out, depth + 1);
        } else {
            out.push_back({std::move(piece), weight});
        }
    }
}

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if ((a[i] | 0x20) != b[i]) return false;
    return true;
}

}  // namespace

bool parse_prompt_weight(std::string_view text, double& value) {
    while (!text.empty() && is_ascii_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_ascii_space(text.back())) text.remove_suffix(1);
    std::string digits;
    std::size_t i = 0;
    bool negative = false;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
    const std::string_view body = text.substr(i);
    if (iequals(body, "inf") || iequals(body, "infinity") || iequals(body, "nan")) return false;
    // Python's grammar: digits with single '_' between digits, an optional fraction, an optional
    // exponent; at least one digit in the mantissa.
    auto read_digits = [&](bool& any) {
        while (i < text.size()) {
            if (is_digit(text[i])) {
                digits += text[i++];
                any = true;
            } else if (text[i] == '_' && any && i + 1 < text.size() && is_digit(text[i + 1]) && is_digit(text[i - 1])) {
                ++i;
            } else {
                break;
            }
        }
    };
    bool int_digits = false, frac_digits = false;
    read_digits(int_digits);
    if (i < text.size() && text[i] == '.') {
        digits += text[i++];
        read_digits(frac_digits);
    }
    if (!int_digits && !frac_digits) return false;
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        digits += text[i++];
        if (i < text.size() && (text[i] == '+' || text[i] == '-')) digits += text[i++];
        bool exp_digits = false;
        read_digits(exp_digits);
        if (!exp_digits) return false;
    }
    if (i != text.size()) return false;
    double parsed = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), parsed);
    if (end != digits.data() + digits.size()) return false;
    if (ec == std::errc::result_out_of_range) {
        // Python rounds underflow to zero and overflow to infinity (refused as not finite).
        const std::size_t e = digits.find_first_of("eE");
        if (e == std::string::npos || digits.find('-', e) == std::string::npos) return false;
        parsed = 0;
    } else if (ec != std::errc()) {
        return false;
    }
    if (!std::isfinite(parsed)) return false;
    value = negative ? -parsed : parsed;
    return true;
}

std::vector<WeightedText> parse_prompt_weights(std::string_view prompt) {
    std::string escaped = replace_all(std::string(prompt), "\\)", kEscapedClose);
    escaped = replace_all(std::move(escaped), "\\(", kEscapedOpen);
    std::vector<WeightedText> segments;
    weighted_segments(escaped, 1.0, segments, 0);
    for (WeightedText& s : segments) {
        s.text = replace_all(std::move(s.text), kEscapedClose, ")");
        s.text = replace_all(std::move(s.text), kEscapedOpen, "(");
    }
    return segments;
}

PromptTokens tokenize_prompt(const ClipTokenizer& tokenizer, std::string_view prompt) {
    // Token groups: each segment split before " embedding:" / "\nembedding:", pieces tokenised
    // independently (the separator's space or newline is dropped, as in ComfyUI).
    struct Token {
        std::int32_t id;
        double weight;
    };
    std::vector<std::vector<Token>> groups;
    for (const WeightedText& segment : parse_prompt_weights(prompt)) {
        const std::string& s = segment.text;
        std::vector<std::string> pieces;
        std::size_t begin = 0;
        for (std::size_t pos = 0; pos < s.size(); ++pos) {
            if ((s[pos] == ' ' || s[pos] == '\n') && s.compare(pos + 1, 10, "embedding:") == 0) {
                pieces.push_back(s.substr(begin, pos - begin));
                begin = pos + 1;
            }
        }
        pieces.push_back(s.substr(begin));
        for (const std::string& piece : pieces) {
            if (piece.empty()) continue;
            std::vector<Token> group;
            for (const std::int32_t id : tokenizer.encode(piece)) group.push_back({id, segment.weight});
            groups.push_back(std::move(group));
        }
    }

    constexpr std::size_t kLength = kClipContextLength, kLargeGroup = 8;
    PromptTokens out;
    std::size_t chunk_size = 0;  // tokens in the open chunk
    auto push = [&](std::int32_t id, double weight) {
        out.ids.push_back(id);
        out.weights.push_back(weight);
        ++chunk_size;
    };
    auto open_chunk = [&] {
        chunk_size = 0;
        push(tokenizer.start_id(), 1.0);
    };
    open_chunk();
    for (const std::vector<Token>& group : groups) {
        const bool large = group.size() >= kLargeGroup;
        std::size_t next = 0;
        while (next < group.size()) {
            const std::size_t left = group.size() - next;
            if (left + chunk_size > kLength - 1) {
                const std::size_t room = kLength - chunk_size - 1;
                if (large) {
                    for (std::size_t k = 0; k < room; ++k, ++next) push(group[next].id, group[next].weight);
                    push(tokenizer.end_id(), 1.0);
                } else {
                    push(tokenizer.end_id(), 1.0);
                    for (std::size_t k = 0; k < room; ++k) push(tokenizer.pad_id(), 1.0);
                }
                open_chunk();
            } else {
                for (; next < group.size(); ++next) push(group[next].id, group[next].weight);
            }
        }
    }
    push(tokenizer.end_id(), 1.0);
    while (chunk_size < kLength) push(tokenizer.pad_id(), 1.0);
    return out;
}

}  // namespace unclip::text
