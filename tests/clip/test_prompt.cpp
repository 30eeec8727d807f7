#include <fstream>

#include "test_support.hpp"
#include "unclip/text/prompt.hpp"

using namespace unclip;

namespace {
std::string from_hex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

double weight_of(const std::vector<text::WeightedText>& segments, const std::string& text) {
    for (const auto& s : segments)
        if (s.text == text) return s.weight;
    FAIL_CHECK("no segment '" << text << "'");
    return 0;
}
}  // namespace

TEST_SUITE("clip") {

TEST_CASE("Prompt weights follow ComfyUI: x1.1 per paren, nesting multiplies, ':w' replaces") {
    const auto s = text::parse_prompt_weights("a (b) ((c)) (d:1.5) ((e:0.5)) (f (g:2) h:1.3)");
    CHECK(weight_of(s, "a ") == 1.0);
    CHECK(weight_of(s, "b") == 1.0 * 1.1);
    CHECK(weight_of(s, "c") == 1.0 * 1.1 * 1.1);
    CHECK(weight_of(s, "d") == 1.5);
    CHECK(weight_of(s, "e") == 0.5);
    CHECK(weight_of(s, "f ") == 1.3);
    CHECK(weight_of(s, "g") == 2.0);
    CHECK(weight_of(s, " h") == 1.3);
}

TEST_CASE("Escaped and unbalanced parentheses are kept as text as ComfyUI keeps them") {
    auto s = text::parse_prompt_weights("a \\(b\\) c");
    REQUIRE(s.size() == 1);
    CHECK(s[0].text == "a (b) c");
    CHECK(s[0].weight == 1.0);
    s = text::parse_prompt_weights("x (y");
    REQUIRE(s.size() == 2);
    CHECK(s[1].text == "(y");
    CHECK(s[1].weight == 1.0);
    s = text::parse_prompt_weights("x) (y) z");
    REQUIRE(s.size() == 1);
    CHECK(s[0].text == "x) (y) z");
    CHECK(text::parse_prompt_weights("").empty());
}

TEST_CASE("A weight that is not a finite number leaves the text in place") {
    auto s = text::parse_prompt_weights("(cat:abc)");
    REQUIRE(s.size() == 1);
    CHECK(s[0].text == "cat:abc");
    CHECK(s[0].weight == 1.1);
    for (const char* p : {"(cat:nan)", "(cat:inf)", "(cat:-Infinity)", "(cat:1e999)", "(cat:)", "(cat:1__0)"}) {
        INFO(p);
        s = text::parse_prompt_weights(p);
        REQUIRE(s.size() == 1);
        CHECK(s[0].weight == 1.1);
        CHECK(s[0].text == std::string(p).substr(1, std::string(p).size() - 2));
    }
}

TEST_CASE("Weights are read as Python's float() reads them") {
    double v = 0;
    CHECK((text::parse_prompt_weight(" 1.25 ", v) && v == 1.25));
    CHECK((text::parse_prompt_weight("1_0", v) && v == 10.0));
    CHECK((text::parse_prompt_weight("+.5e1", v) && v == 5.0));
    CHECK((text::parse_prompt_weight("5.", v) && v == 5.0));
    CHECK((text::parse_prompt_weight("-0.5", v) && v == -0.5));
    CHECK((text::parse_prompt_weight("1e-999", v) && v == 0.0));
    for (const char* bad : {"", ".", "_1", "1_", "1._5", "e5", "1e", "0x10", "1.2.3", "abc", "nan", "INF", "1e400"}) {
        INFO("'" << bad << "'");
        CHECK_FALSE(text::parse_prompt_weight(bad, v));
    }
}

TEST_CASE("Prompt tokens and weights match ComfyUI's chunking on golden prompts") {
    std::ifstream in(test::data_path("clip/tokenizer_golden.json"));
    const auto doc = nlohmann::json::parse(in);
    const auto tok = text::ClipTokenizer::bundled();
    const auto& prompts = doc.at("prompts");
    REQUIRE(prompts.size() >= 40);
    int multi_chunk = 0;
    for (const auto& p : prompts) {
        const std::string prompt = from_hex(p.at("utf8_hex"));
        INFO("prompt '" << prompt.substr(0, 100) << "'");
        const auto tokens = text::tokenize_prompt(tok, prompt);
        CHECK(tokens.ids == p.at("ids").get<std::vector<std::int32_t>>());
        CHECK(tokens.weights == p.at("weights").get<std::vector<double>>());
        multi_chunk += tokens.chunks() > 1;
    }
    CHECK(multi_chunk >= 5);
}

TEST_CASE("An empty prompt is one chunk [start, end, 0 x 75]") {
    const auto tok = text::ClipTokenizer::bundled();
    const auto tokens = text::tokenize_prompt(tok, "");
    REQUIRE(tokens.chunks() == 1);
    CHECK(tokens.ids[0] == 49406);
    CHECK(tokens.ids[1] == 49407);
    CHECK(std::all_of(tokens.ids.begin() + 2, tokens.ids.end(), [](std::int32_t id) { return id == 0; }));
    CHECK_FALSE(tokens.weighted());
}

TEST_CASE("A 10,000-token prompt becomes 134 chunks of 77, each opened and closed") {
    const auto tok = text::ClipTokenizer::bundled();
    std::string prompt;
    for (int i = 0; i < 10000; ++i) prompt += "cat ";
    const auto tokens = text::tokenize_prompt(tok, prompt);
    REQUIRE(tokens.chunks() == 134);  // 1-token groups, 75 per chunk
    for (std::int64_t c = 0; c < tokens.chunks(); ++c) {
        CHECK(tokens.ids[static_cast<std::size_t>(c * 77)] == tok.start_id());
        const auto first = tokens.ids.begin() + c * 77;
        CHECK(std::count(first, first + 77, tok.end_id()) == 1);
    }
}

TEST_CASE("Prompts with invalid UTF-8 or absurd nesting never crash") {
    const auto tok = text::ClipTokenizer::bundled();
    const auto tokens = text::tokenize_prompt(tok, "(bad \xff\xfe:1.2) \xc3(");
    CHECK(tokens.chunks() == 1);
    CHECK(tokens.weighted());
    const std::string deep = std::string(100000, '(') + "x" + std::string(100000, ')');
    CHECK_THROWS_STATUS(text::tokenize_prompt(tok, deep), Status::invalid_argument, "nested deeper");
    const std::string open_only = std::string(100000, '(') + "x";
    CHECK(text::tokenize_prompt(tok, open_only).chunks() > 1);
}

}  // TEST_SUITE
