#include <fstream>
#include <sstream>

#include "test_support.hpp"
#include "unclip/text/prompt.hpp"
#include "unclip/text/tokenizer.hpp"

using namespace unclip;

namespace {
const nlohmann::json& golden() {
    static const nlohmann::json doc = [] {
        std::ifstream in(test::data_path("clip/tokenizer_golden.json"));
        REQUIRE_MESSAGE(in.good(), "missing clip/tokenizer_golden.json");
        return nlohmann::json::parse(in);
    }();
    return doc;
}

std::string from_hex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

std::string show(const std::string& text) {
    std::string s = text.substr(0, 80);
    return "'" + s + (text.size() > 80 ? "...'" : "'");
}
}  // namespace

TEST_SUITE("clip") {

TEST_CASE("The bundled tokenizer has the CLIP vocabulary size and special ids") {
    const auto tok = text::ClipTokenizer::bundled();
    CHECK(tok.vocab_size() == 49408);
    CHECK(tok.start_id() == 49406);
    CHECK(tok.end_id() == 49407);
    CHECK(tok.pad_id() == 0);
}

TEST_CASE("The tokenizer encodes 2,000+ golden strings exactly as open_clip and transformers do") {
    const auto tok = text::ClipTokenizer::bundled();
    const auto& cases = golden().at("cases");
    REQUIRE(cases.size() >= 2000);
    std::map<std::string, int> per_category, failures;
    int failed = 0;
    for (const auto& c : cases) {
        const std::string category = c.at("category");
        const std::string text = from_hex(c.at("utf8_hex"));
        const auto expected = c.at("ids").get<std::vector<std::int32_t>>();
        const auto actual = tok.encode(text);
        ++per_category[category];
        if (actual != expected) {
            ++failures[category];
            if (++failed <= 10) FAIL_CHECK(category << " " << show(text) << " cleaned " << show(tok.clean(text)));
        }
    }
    for (const char* needed : {"ascii", "accents", "cjk", "emoji", "punctuation", "numbers", "long", "long_word",
                               "empty", "invalid_utf8", "open_clip_ftfy"})
        CHECK_MESSAGE(per_category[needed] > 0, "no golden strings of category " << needed);
    for (const auto& [category, n] : failures) MESSAGE(category << ": " << n << " of " << per_category[category] << " differ");
    CHECK(failed == 0);
}

TEST_CASE("tokenize() adds start and end, pads with 0 and truncates to 77 as open_clip does") {
    const auto tok = text::ClipTokenizer::bundled();
    int checked = 0, failed = 0, truncated = 0;
    for (const auto& c : golden().at("cases")) {
        if (!c.contains("context77")) continue;
        const auto expected = c.at("context77").get<std::vector<std::int32_t>>();
        const auto actual = tok.tokenize(from_hex(c.at("utf8_hex")));
        ++checked;
        truncated += c.at("ids").size() > 75;
        if (actual != expected && ++failed <= 5) FAIL_CHECK(show(from_hex(c.at("utf8_hex"))));
    }
    CHECK(checked > 200);
    CHECK(truncated > 20);
    CHECK(failed == 0);
}

TEST_CASE("A tokenizer read from vocab.json and merges.txt matches transformers on the same files") {
    const auto tok = text::ClipTokenizer::from_files(test::data_path("clip/tokenizer_small/vocab.json"),
                                                     test::data_path("clip/tokenizer_small/merges.txt"));
    CHECK(tok.start_id() == 3000 + 512);
    CHECK(tok.end_id() == 3000 + 513);
    const auto& cases = golden().at("small_vocabulary");
    REQUIRE(cases.size() >= 4);
    for (const auto& c : cases) {
        const std::string text = from_hex(c.at("utf8_hex"));
        INFO("text " << show(text));
        CHECK(tok.encode(text) == c.at("ids").get<std::vector<std::int32_t>>());
    }
}

TEST_CASE("Malformed UTF-8 is replaced, never rejected, and long inputs are tokenised in full") {
    const auto tok = text::ClipTokenizer::bundled();
    // Each malformed byte sequence reads as U+FFFD, like Python's errors="replace".
    CHECK(tok.encode("a\xff" "b") == tok.encode("a\xef\xbf\xbd" "b"));
    CHECK(tok.encode("\xe2\x82") == tok.encode("\xef\xbf\xbd"));
    CHECK(tok.encode("x\xf0\x9f\x98") == tok.encode("x\xef\xbf\xbd"));
    CHECK(tok.encode(std::string("nul\0byte", 8)) == tok.encode("nulbyte"));
    std::string words;
    for (int i = 0; i < 10000; ++i) words += "cat ";
    CHECK(tok.encode(words).size() == 10000);
    const auto ids = tok.tokenize(words);
    CHECK(ids.size() == 77);
    CHECK(ids.back() == tok.end_id());
    // One 200,000-letter word: BPE over 200,000 symbols must stay near-linear.
    std::string word;
    for (int i = 0; i < 200000; ++i) word += static_cast<char>('a' + (i * 7919) % 26);
    const auto word_ids = tok.encode(word);
    CHECK(word_ids.size() > 10000);
    CHECK(word_ids.back() >= 256);  // the word-final symbol carries "</w>"
}

TEST_CASE("Unreadable or malformed vocabulary files are refused naming the file and entry") {
    test::TempDir dir;
    CHECK_THROWS_STATUS(text::ClipTokenizer::from_files(dir / "missing.json", dir / "merges.txt"), Status::io,
                        "missing.json");
    CHECK_THROWS_STATUS(text::ClipTokenizer::from_strings("[1, 2]", "", "tok"), Status::bad_model,
                        "not a JSON object");
    CHECK_THROWS_STATUS(text::ClipTokenizer::from_strings("{\"a\": \"x\"}", "", "tok"), Status::bad_model,
                        "entry 'a'");
    CHECK_THROWS_STATUS(text::ClipTokenizer::from_strings("{\"a\": 1}", "", "tok"), Status::bad_model,
                        "<|startoftext|>");
    std::ifstream in(test::data_path("clip/tokenizer_small/vocab.json"));
    std::stringstream vocab;
    vocab << in.rdbuf();
    CHECK_THROWS_STATUS(text::ClipTokenizer::from_strings(vocab.str(), "#version: 0.2\ni n\nbad\n", "tok"),
                        Status::bad_model, "merges line 3");
    CHECK_THROWS_STATUS(text::ClipTokenizer::from_strings(vocab.str(), "#version: 0.2\nqqqqq jjjjj\n", "tok"),
                        Status::bad_model, "'qqqqq'");
    CHECK_THROWS_STATUS(text::ClipTokenizer::bundled().tokenize("a", 1), Status::invalid_argument, "context_length");
}

}  // TEST_SUITE
