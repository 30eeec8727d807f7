#pragma once
// ComfyUI's prompt syntax for SD 2.x (comfy/sd1_clip.py): weights in parentheses and 77-token
// chunking of long prompts. The weights are applied to the encoded text by
// nn::encode_prompt (nn/clip_text.hpp).
//
//   (word)        weight x1.1; nesting multiplies: ((word)) = 1.21
//   (word:1.3)    weight 1.3, absolute (replaces the inherited weight); the number follows the
//                 last ':' of the group and is read as Python's float() reads it
//   \( \)         literal parentheses
//   unbalanced    an unmatched '(' or ')' is kept as text, exactly as ComfyUI keeps it
//
// Deviations, each because ComfyUI's behaviour would be harmful or needs files unclip does not
// read: a weight that is NaN or infinite is not a weight (the group keeps x1.1 and the text
// keeps ":nan"); "embedding:name" is tokenised as text (no textual-inversion files), though it
// still starts a new token group as in ComfyUI; only ASCII digits form a weight.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/text/tokenizer.hpp"

namespace unclip::text {

struct WeightedText {
    std::string text;  // UTF-8 (bytes of the prompt, escapes resolved)
    double weight = 1.0;
};

// The prompt split into weighted segments, in order (ComfyUI token_weights); an empty prompt
// gives no segments. Malformed text is never an error, but parentheses nested more than 500
// deep throw Error(Status::invalid_argument).
UNCLIP_CXX_API std::vector<WeightedText> parse_prompt_weights(std::string_view prompt);

// Python float() on `text` (surrounding whitespace, a sign, '_' between digits, exponents), or
// false when it is not a finite number.
UNCLIP_CXX_API bool parse_prompt_weight(std::string_view text, double& value);

struct PromptTokens {
    // Row-major [chunks, 77]: each chunk is [start] + up to 75 tokens + [end] + pad 0s.
    std::vector<std::int32_t> ids;
    // Same shape; start, end and pad tokens carry 1.0.
    std::vector<double> weights;
    std::int64_t chunks() const noexcept { return static_cast<std::int64_t>(ids.size()) / kClipContextLength; }
    // True when any token's weight differs from 1.0 (then encoding also runs the empty prompt).
    bool weighted() const noexcept {
        for (const double w : weights)
            if (w != 1.0) return true;
        return false;
    }
};

// ComfyUI tokenize_with_weights for SD 2.x: each weighted segment (and each "embedding:" piece
// of it) is tokenised on its own; a group of 8 tokens or more is split at the chunk boundary,
// a shorter one that does not fit closes the chunk and moves whole to the next. An empty prompt
// gives one chunk [start, end, 0 x 75]. Any length is accepted (10,000 tokens -> 135 chunks).
UNCLIP_CXX_API PromptTokens tokenize_prompt(const ClipTokenizer& tokenizer, std::string_view prompt);

}  // namespace unclip::text
