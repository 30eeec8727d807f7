// CLIP byte-level BPE. The vocabulary is built the way OpenAI CLIP / open_clip build it from the
// merges file (256 byte symbols, the same with "</w>", one symbol per merge, then the specials),
// or read from a transformers vocab.json; BPE itself works on symbol ids.
#include "unclip/text/tokenizer.hpp"

#include <zlib.h>

#include <fstream>
#include <limits>
#include <mutex>
#include <queue>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "text/unicode.hpp"

namespace unclip::detail {
extern const unsigned char kClipBpeVocabGz[];
extern const std::size_t kClipBpeVocabGzSize;
}  // namespace unclip::detail

namespace unclip::text {

struct ClipTokenizer::Impl {
    std::int32_t start = 0, end = 0, vocab_size = 0;
    std::int32_t byte_id[256] = {};      // symbol of a byte inside a word
    std::int32_t byte_end_id[256] = {};  // symbol of a word's last byte ("</w>" appended)
    struct Merge {
        std::int32_t rank, merged;
    };
    std::unordered_map<std::uint64_t, Merge> merges;  // key: (left id << 32) | right id

    std::vector<std::int32_t> bpe(std::string_view word) const;
};

namespace {

constexpr std::size_t kBundledMergeCount = 49152 - 256 - 2;  // what open_clip reads of the file

std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

// GPT-2's reversible byte -> printable code point table: printable Latin-1 bytes map to
// themselves, the rest to 256 + n in byte order.
std::vector<char32_t> bytes_to_unicode_order(std::vector<int>& byte_order) {
    std::vector<char32_t> chars;
    byte_order.clear();
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    for (int b = 0; b < 256; ++b)
        if (printable(b)) byte_order.push_back(b), chars.push_back(static_cast<char32_t>(b));
    int n = 0;
    for (int b = 0; b < 256; ++b)
        if (!printable(b)) byte_order.push_back(b), chars.push_back(static_cast<char32_t>(256 + n++));
    return chars;
}

std::string byte_symbol(char32_t cp) {
    std::string s;
    detail::append_utf8(s, cp);
    return s;
}

// Shared by both vocabulary sources: byte symbols and merges resolved to ids through `vocab`.
std::shared_ptr<ClipTokenizer::Impl> build(const std::unordered_map<std::string, std::int32_t>& vocab,
                                           const std::vector<std::pair<std::string, std::string>>& merges,
                                           std::int32_t start, std::int32_t end, const std::string& origin) {
    auto impl = std::make_shared<ClipTokenizer::Impl>();
    impl->start = start;
    impl->end = end;
    std::int32_t max_id = std::max(start, end);
    for (const auto& [token, id] : vocab) max_id = std::max(max_id, id);
    impl->vocab_size = max_id + 1;
    auto lookup = [&](const std::string& token, const char* what) {
        const auto it = vocab.find(token);
        if (it == vocab.end())
            throw Error(Status::bad_model, origin + ": " + what + " '" + token + "' is not in the vocabulary");
        return it->second;
    };
    std::vector<int> byte_order;
    const std::vector<char32_t> chars = bytes_to_unicode_order(byte_order);
    for (std::size_t i = 0; i < chars.size(); ++i) {
        const std::string symbol = byte_symbol(chars[i]);
        impl->byte_id[byte_order[i]] = lookup(symbol, "byte symbol");
        impl->byte_end_id[byte_order[i]] = lookup(symbol + "</w>", "byte symbol");
    }
    impl->merges.reserve(merges.size() * 2);
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
        const auto& [a, b] = merges[rank];
        const std::int32_t left = lookup(a, "merge symbol"), right = lookup(b, "merge symbol");
        const ClipTokenizer::Impl::Merge m{static_cast<std::int32_t>(rank), lookup(a + b, "merge result")};
        // The first (best-ranked) occurrence of a pair wins, as with Python's dict(zip(...)).
        impl->merges.emplace(pair_key(left, right), m);
    }
    return impl;
}

// Merge lines "left right"; a "#version" header is skipped, as transformers does.
std::vector<std::pair<std::string, std::string>> parse_merges(std::string_view text, std::size_t first_line,
                                                              std::size_t max_count, const std::string& origin) {
    std::vector<std::pair<std::string, std::string>> merges;
    std::size_t line_no = 0, pos = 0;
    while (pos <= text.size() && merges.size() < max_count) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        const std::size_t this_line = line_no++;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (this_line < first_line || line.empty() || (this_line == 0 && line.rfind("#version", 0) == 0)) continue;
        const std::size_t space = line.find(' ');
        if (space == std::string_view::npos || space == 0 || space + 1 >= line.size() ||
            line.find(' ', space + 1) != std::string_view::npos)
            throw Error(Status::bad_model, origin + ": merges line " + std::to_string(this_line + 1) +
                                               " is not two symbols separated by one space");
        merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
    }
    return merges;
}

std::string gunzip(const unsigned char* data, std::size_t size) {
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw Error(Status::internal, "zlib: inflateInit2 failed");
    std::string out;
    zs.next_in = const_cast<unsigned char*>(data);
    zs.avail_in = static_cast<uInt>(size);
    int rc = Z_OK;
    char buffer[1 << 16];
    while (rc != Z_STREAM_END) {
        zs.next_out = reinterpret_cast<unsigned char*>(buffer);
        zs.avail_out = sizeof(buffer);
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&zs);
            throw Error(Status::internal, "bundled CLIP vocabulary: gzip data is corrupt (zlib error " +
                                              std::to_string(rc) + ")");
        }
        out.append(buffer, sizeof(buffer) - zs.avail_out);
    }
    inflateEnd(&zs);
    return out;
}

std::shared_ptr<const ClipTokenizer::Impl> load_bundled() {
    const std::string text = gunzip(::unclip::detail::kClipBpeVocabGz, ::unclip::detail::kClipBpeVocabGzSize);
    // open_clip: the file's first line is a header; the next 48,894 lines are the merges.
    const auto merges = parse_merges(text, 1, kBundledMergeCount, "bundled CLIP vocabulary");
    std::unordered_map<std::string, std::int32_t> vocab;
    std::vector<int> byte_order;
    const std::vector<char32_t> chars = bytes_to_unicode_order(byte_order);
    std::int32_t next = 0;
    for (const char32_t c : chars) vocab.emplace(byte_symbol(c), next++);
    for (const char32_t c : chars) vocab.emplace(byte_symbol(c) + "</w>", next++);
    for (const auto& [a, b] : merges) vocab.emplace(a + b, next++);
    const std::int32_t start = next++, end = next++;
    return build(vocab, merges, start, end, "bundled CLIP vocabulary");
}

std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Status::io, "open '" + path.string() + "': cannot read the file");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(Status::io, "read '" + path.string() + "': read error");
    return ss.str();
}

bool is_contraction_at(const std::u32string& t, std::size_t i, std::size_t& len) {
    if (t[i] != U'\'' || i + 1 >= t.size()) return false;
    const char32_t a = t[i + 1];
    const char32_t b = i + 2 < t.size() ? t[i + 2] : 0;
    if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) {
        len = 3;
        return true;
    }
    if (a == U's' || a == U't' || a == U'm' || a == U'd') {
        len = 2;
        return true;
    }
    return false;
}

}  // namespace

std::vector<std::int32_t> ClipTokenizer::Impl::bpe(std::string_view word) const {
    // The reference merges every occurrence of the best-ranked adjacent pair, left to right, and
    // repeats. A heap of (rank, position) candidates does the same in O(n log n) instead of
    // O(n^2) (a 100,000-letter "word" would otherwise take minutes): a merge's product only takes
    // part in merges learned after it, so pairs created by a merge always rank after it and the
    // heap pops merges in the reference's order.
    const auto n = static_cast<std::int32_t>(word.size());
    struct Symbol {
        std::int32_t id, prev, next;
    };
    std::vector<Symbol> symbols(static_cast<std::size_t>(n));
    for (std::int32_t i = 0; i < n; ++i) {
        const auto b = static_cast<unsigned char>(word[static_cast<std::size_t>(i)]);
        symbols[static_cast<std::size_t>(i)] = {i + 1 == n ? byte_end_id[b] : byte_id[b], i - 1, i + 1 < n ? i + 1 : -1};
    }
    struct Candidate {
        std::int32_t rank, left, left_id, right_id;
        bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
    auto consider = [&](std::int32_t left) {
        if (left < 0) return;
        const std::int32_t right = symbols[static_cast<std::size_t>(left)].next;
        if (right < 0) return;
        const std::int32_t a = symbols[static_cast<std::size_t>(left)].id, b = symbols[static_cast<std::size_t>(right)].id;
        const auto it = merges.find(pair_key(a, b));
        if (it != merges.end()) heap.push({it->second.rank, left, a, b});
    };
    for (std::int32_t i = 0; i + 1 < n; ++i) consider(i);
    std::vector<bool> dead(static_cast<std::size_t>(n), false);
    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        Symbol& left = symbols[static_cast<std::size_t>(c.left)];
        // Stale: the left symbol was absorbed or has changed, or its right neighbour has.
        if (dead[static_cast<std::size_t>(c.left)] || left.id != c.left_id || left.next < 0 ||
            symbols[static_cast<std::size_t>(left.next)].id != c.right_id)
            continue;
        const std::int32_t right = left.next;
        left.id = merges.at(pair_key(c.left_id, c.right_id)).merged;
        dead[static_cast<std::size_t>(right)] = true;
        left.next = symbols[static_cast<std::size_t>(right)].next;
        if (left.next >= 0) symbols[static_cast<std::size_t>(left.next)].prev = c.left;
        consider(left.prev);
        consider(c.left);
    }
    std::vector<std::int32_t> out;
    for (std::int32_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
        out.push_back(symbols[static_cast<std::size_t>(i)].id);
    return out;
}

ClipTokenizer ClipTokenizer::bundled() {
    static std::once_flag once;
    static std::shared_ptr<const Impl> instance;
    std::call_once(once, [] { instance = load_bundled(); });
    return ClipTokenizer(instance);
}

ClipTokenizer ClipTokenizer::from_files(const std::filesystem::path& vocab_json,
                                        const std::filesystem::path& merges_txt) {
    const std::string vocab = read_text_file(vocab_json);
    const std::string merges = read_text_file(merges_txt);
    return from_strings(vocab, merges, "'" + vocab_json.string() + "' / '" + merges_txt.string() + "'");
}

ClipTokenizer ClipTokenizer::from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                          const std::string& origin) {
    const auto json = nlohmann::json::parse(vocab_json.begin(), vocab_json.end(), nullptr, false);
    if (json.is_discarded() || !json.is_object())
        throw Error(Status::bad_model, origin + ": vocab.json is not a JSON object");
    std::unordered_map<std::string, std::int32_t> vocab;
    for (auto it = json.begin(); it != json.end(); ++it) {
        if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
            it.value().get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
            throw Error(Status::bad_model, origin + ": vocab.json entry '" + it.key() + "' is not a token id");
        vocab.emplace(it.key(), it.value().get<std::int32_t>());
    }
    auto special = [&](const char* name) {
        const auto it = vocab.find(name);
        if (it == vocab.end()) throw Error(Status::bad_model, origin + ": vocab.json has no '" + std::string(name) + "'");
        return it->second;
    };
    const std::int32_t start = special("<|startoftext|>"), end = special("<|endoftext|>");
    const auto merges = parse_merges(merges_txt, 0, std::numeric_limits<std::size_t>::max(), origin);
    return ClipTokenizer(build(vocab, merges, start, end, origin));
}

std::int32_t ClipTokenizer::start_id() const noexcept { return impl_->start; }
std::int32_t ClipTokenizer::end_id() const noexcept { return impl_->end; }
std::int32_t ClipTokenizer::vocab_size() const noexcept { return impl_->vocab_size; }

namespace {
std::u32string clean_u32(std::string_view text) {
    using namespace detail;
    return to_lower(collapse_whitespace(nfc(apply_text_fixes(decode_utf8(text)))));
}
}  // namespace

std::string ClipTokenizer::clean(std::string_view text) const { return detail::encode_utf8(clean_u32(text)); }

std::vector<std::int32_t> ClipTokenizer::encode(std::string_view text) const {
    using namespace detail;
    const std::u32string t = clean_u32(text);
    std::vector<std::int32_t> ids;
    std::string piece;
    // The CLIP pre-tokenisation regex
    //   's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
    // scanned left to right; the alternatives are tried in this order at each match start.
    for (std::size_t i = 0; i < t.size();) {
        std::size_t len = 0;
        if (is_contraction_at(t, i, len)) {
        } else if (is_letter(t[i])) {
            while (i + len < t.size() && is_letter(t[i + len])) ++len;
        } else if (is_number(t[i])) {
            len = 1;
        } else if (is_space(t[i])) {
            ++i;
            continue;
        } else {
            while (i + len < t.size() && !is_space(t[i + len]) && !is_letter(t[i + len]) && !is_number(t[i + len]))
                ++len;
        }
        piece.clear();
        for (std::size_t k = 0; k < len; ++k) append_utf8(piece, t[i + k]);
        const std::vector<std::int32_t> word = impl_->bpe(piece);
        ids.insert(ids.end(), word.begin(), word.end());
        i += len;
    }
    return ids;
}

std::vector<std::int32_t> ClipTokenizer::tokenize(std::string_view text, int context_length) const {
    if (context_length < 2)
        throw Error(Status::invalid_argument,
                    "ClipTokenizer::tokenize: context_length must be at least 2, got " + std::to_string(context_length));
    std::vector<std::int32_t> ids{impl_->start};
    const std::vector<std::int32_t> body = encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    ids.push_back(impl_->end);
    const auto n = static_cast<std::size_t>(context_length);
    if (ids.size() > n) {
        ids.resize(n);
        ids.back() = impl_->end;
    }
    ids.resize(n, kClipPadId);
    return ids;
}

}  // namespace unclip::text
