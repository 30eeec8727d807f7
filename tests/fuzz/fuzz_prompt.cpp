// Fuzz target: the CLIP tokenizer and ComfyUI's prompt-weight syntax. The first byte picks the
// mode: prompts through the bundled vocabulary, or a vocabulary and merges file pair.
#include <algorithm>

#include "fuzz_support.hpp"
#include "unclip/text/prompt.hpp"
#include "unclip/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace unclip;
    if (size == 0) return 0;
    const std::uint8_t mode = data[0];
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    static const text::ClipTokenizer bundled = text::ClipTokenizer::bundled();
    if (mode % 4 != 3) {
        fuzz::expect_error_or_success([&] {
            const text::PromptTokens tokens = text::tokenize_prompt(bundled, text);
            if (tokens.ids.size() != tokens.weights.size() || tokens.ids.size() % text::kClipContextLength) std::abort();
            for (const std::int32_t id : tokens.ids)
                if (id < 0 || id >= bundled.vocab_size()) std::abort();
        });
        double weight = 0;
        text::parse_prompt_weight(text, weight);
        fuzz::expect_error_or_success([&] {
            bundled.clean(text);
            const auto ids = bundled.tokenize(text, 2 + mode % 100);
            if (ids.size() != static_cast<std::size_t>(2 + mode % 100)) std::abort();
        });
        return 0;
    }
    // vocab.json, a NUL, merges.txt, then the text to encode after a second NUL.
    const std::size_t cut = std::min(text.find('\0'), text.size());
    const std::string_view vocab = text.substr(0, cut);
    const std::string_view rest = cut < text.size() ? text.substr(cut + 1) : std::string_view();
    const std::size_t cut2 = std::min(rest.find('\0'), rest.size());
    const std::string_view merges = rest.substr(0, cut2);
    const std::string_view sample = cut2 < rest.size() ? rest.substr(cut2 + 1) : std::string_view("a photo of a cat");
    fuzz::expect_error_or_success([&] {
        const auto tokenizer = text::ClipTokenizer::from_strings(vocab, merges, "fuzz tokenizer");
        for (const std::int32_t id : tokenizer.tokenize(sample))
            if (id < 0 || id >= tokenizer.vocab_size()) std::abort();
    });
    return 0;
}
