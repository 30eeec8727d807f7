#pragma once
// The CLIP byte-level BPE tokenizer that SD 2.x conditions on (OpenAI CLIP's vocabulary, as
// open_clip's SimpleTokenizer and transformers' CLIPTokenizer use it).
//
// Text cleanup before BPE, in this order: invalid UTF-8 becomes U+FFFD; ftfy's character fixes
// that open_clip applies (control characters removed, curly quotes straightened, Latin ligatures
// and full-width forms expanded); Unicode NFC; whitespace runs collapsed to one space and the
// ends stripped; per-character lower-casing. Then the CLIP pre-tokenisation regex (contractions,
// letter runs, single digits, runs of other symbols), byte-to-unicode mapping and BPE with the
// "</w>" word-end marker.
//
// Not reproduced, because they are heuristics or differ between the reference tokenizers:
// ftfy's mojibake repair, open_clip's HTML-entity unescaping (transformers keeps entities; we
// do too), the final-sigma rule of Python's str.lower(), and special-token names written in the
// prompt (they are tokenised as text).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/error.hpp"

namespace unclip::text {

inline constexpr int kClipContextLength = 77;   // tokens per CLIP text sequence, start and end included
inline constexpr std::int32_t kClipPadId = 0;   // SD 2.x / open_clip pad with zeros ("!")

class UNCLIP_CXX_API ClipTokenizer {
public:
    // The vocabulary compiled into the library (open_clip's bpe_simple_vocab_16e6: 49,408 ids,
    // start 49406, end 49407). The first call decompresses and indexes it (tens of milliseconds);
    // later calls share that instance.
    static ClipTokenizer bundled();
    // A transformers/diffusers tokenizer folder's vocab.json and merges.txt. Start and end ids
    // are those of "<|startoftext|>" and "<|endoftext|>". Throws Error(Status::io) when a file
    // cannot be read and Error(Status::bad_model) naming the file and entry that is malformed.
    static ClipTokenizer from_files(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);
    // The same from the files' contents; `origin` names them in error messages.
    static ClipTokenizer from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                      const std::string& origin = "tokenizer");

    std::int32_t start_id() const noexcept;
    std::int32_t end_id() const noexcept;
    std::int32_t pad_id() const noexcept { return kClipPadId; }
    std::int32_t vocab_size() const noexcept;

    // The cleaned text (UTF-8) that pre-tokenisation sees. Never throws on malformed input.
    std::string clean(std::string_view text) const;
    // Token ids of `text` without start and end tokens.
    std::vector<std::int32_t> encode(std::string_view text) const;
    // [start] + encode(text) + [end], padded with pad_id() to `context_length`; a longer sequence
    // is cut to `context_length` with its last token replaced by end (open_clip's truncation).
    // Throws Error(Status::invalid_argument) for context_length < 2.
    std::vector<std::int32_t> tokenize(std::string_view text, int context_length = kClipContextLength) const;

    // Thread-safety: a tokenizer is immutable; all members may be called from several threads.
    // Copies share the vocabulary.
    struct Impl;

private:
    explicit ClipTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

}  // namespace unclip::text
