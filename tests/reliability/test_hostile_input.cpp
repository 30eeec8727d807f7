// Hostile files: pickles that try to run code, zip bombs and overlapping zip entries, safetensors
// offsets aimed at the header, images claiming 100k x 100k pixels and shapes that would overflow
// allocations. Each is refused with an error naming the culprit, before anything is allocated for
// it (under ASan, whose allocator aborts on absurd sizes, a test that passes also proves that).
// The cases already covered by the checkpoint, safetensors and preprocess tests are not repeated.
#include <unclip.h>

#include <cstring>
#include <filesystem>

#include "../checkpoint/checkpoint_helpers.hpp"
#include "raw_zip.hpp"
#include "test_support.hpp"
#include "unclip/image.hpp"
#include "unclip/io/ckpt.hpp"
#include "unclip/io/safetensors.hpp"

using namespace unclip;
using test::PickleWriter;

namespace {

// A .ckpt holding `pickle` as archive/data.pkl and the given storages, all stored.
std::string ckpt_bytes(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages = {}) {
    test::RawZip zip;
    zip.add("archive/data.pkl", pickle);
    zip.add("archive/byteorder", "little");
    for (const auto& [key, bytes] : storages) zip.add("archive/data/" + key, bytes);
    return zip.finish();
}

std::string open_ckpt_error(const test::TempDir& dir, const std::string& bytes) {
    const auto path = dir / "hostile.ckpt";
    test::write_bytes(path, bytes);
    try {
        io::CkptFile::open(path.string());
    } catch (const Error& e) {
        CHECK(e.status() == Status::bad_model);
        CHECK(std::string(e.what()).find("hostile.ckpt") != std::string::npos);
        return e.what();
    }
    return "(opened without error)";
}

std::string pickle_error(const test::TempDir& dir, const std::string& pickle) { return open_ckpt_error(dir, ckpt_bytes(pickle)); }

#define CHECK_CONTAINS(text, needle)                                                       \
    do {                                                                                   \
        const std::string unclip_text_ = (text);                                           \
        CHECK_MESSAGE(unclip_text_.find(needle) != std::string::npos, unclip_text_);       \
    } while (0)

// A LONG1 integer (8 bytes), for values past BININT's 32 bits.
std::string long1(std::int64_t v) {
    std::string s = "\x8a\x08";
    for (int i = 0; i < 8; ++i) s += static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff);
    return s;
}

std::string safetensors(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return out + header + data;
}

}  // namespace

TEST_SUITE("reliability") {

TEST_CASE("pickle globals that would run code are refused by name, and nothing runs") {
    test::TempDir dir;
    const std::string marker = (dir / "pwned").string();
    // builtins.eval through STACK_GLOBAL (protocol 4's spelling), posix.system, getattr, subprocess
    // through NEWOBJ, torch's own byte loader and numpy's array reconstructor.
    PickleWriter eval;
    eval.str("builtins").str("eval").op('\x93').op('(').str("__import__('os').system('touch " + marker + "')").op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, eval.finish()), "global 'builtins.eval' is not allowed");
    PickleWriter posix;
    posix.global("posix", "system").op('(').str("touch " + marker).op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, posix.finish()), "global 'posix.system' is not allowed");
    PickleWriter attr;
    attr.global("builtins", "getattr").op('(').global("collections", "OrderedDict").str("__init__").op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, attr.finish()), "'builtins.getattr'");
    PickleWriter popen;
    popen.global("subprocess", "Popen").op('(').str("touch").str(marker).op('l').op('\x85').op('\x81');
    CHECK_CONTAINS(pickle_error(dir, popen.finish()), "'subprocess.Popen'");
    PickleWriter bytes_loader;
    bytes_loader.global("torch.storage", "_load_from_bytes").op('(').str("x").op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, bytes_loader.finish()), "'torch.storage._load_from_bytes'");
    PickleWriter numpy;
    numpy.global("numpy.core.multiarray", "_reconstruct").op('(').op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, numpy.finish()), "'numpy.core.multiarray._reconstruct'");
    CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("__reduce__ tricks are refused: calling data, BUILD on containers, foreign opcodes, forged storages") {
    test::TempDir dir;
    PickleWriter call_string;  // REDUCE on a string that names a function
    call_string.str("os.system").op('(').str("id").op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, call_string.finish()), "REDUCE on a value that is not a global");
    PickleWriter list_args;
    list_args.global("collections", "OrderedDict").op(']').op('R');
    CHECK_CONTAINS(pickle_error(dir, list_args.finish()), "are not a tuple");
    PickleWriter build_dict;  // __setstate__ onto a plain dict
    build_dict.op('}').op('}').op('b');
    CHECK_CONTAINS(pickle_error(dir, build_dict.finish()), "BUILD is only accepted on numpy metadata");
    PickleWriter fake_storage;  // a tensor built over a string instead of a persistent storage
    fake_storage.global("torch._utils", "_rebuild_tensor_v2").op('(').str("storage").integer(0).int_tuple({1})
        .int_tuple({1}).op('\x89').op(')').op('t').op('R');
    CHECK_CONTAINS(pickle_error(dir, fake_storage.finish()), "first argument is not a storage");
    PickleWriter traversal;  // a storage key that walks out of archive/data/
    traversal.op('(').str("storage").global("torch", "FloatStorage").str("../../etc/passwd").str("cpu").integer(1)
        .op('t').op('Q');
    CHECK_CONTAINS(pickle_error(dir, traversal.finish()), "invalid storage key");
    PickleWriter not_storage;
    not_storage.op('(').str("module").global("collections", "OrderedDict").op('t').op('Q');
    CHECK_CONTAINS(pickle_error(dir, not_storage.finish()), "persistent id is not");
    // OBJ, EXT1 (the copyreg extension registry) and the text PERSID: outside the state-dict set.
    PickleWriter obj;
    obj.op('(').global("collections", "OrderedDict").op('o');
    CHECK_CONTAINS(pickle_error(dir, obj.finish()), "opcode 0x6f");
    PickleWriter ext;
    ext.op('\x82').raw("\x01");
    CHECK_CONTAINS(pickle_error(dir, ext.finish()), "opcode 0x82");
    PickleWriter persid;
    persid.op('P').raw("0\n");
    CHECK_CONTAINS(pickle_error(dir, persid.finish()), "opcode 0x50");
}

TEST_CASE("a pickle that builds a reference cycle or hides its depth behind the memo is refused") {
    test::TempDir dir;
    PickleWriter self_list;  // l = []; l.append(l)
    self_list.op(']').op('2').op('a');
    CHECK_CONTAINS(pickle_error(dir, self_list.finish()), "cycles are not allowed");
    PickleWriter self_key;  // d = {}; d[d] = None
    self_key.op('}').op('2').op('2').op('N').op('s').op('0');
    CHECK_CONTAINS(pickle_error(dir, self_key.finish()), "cycles are not allowed");
    // Lists appended to lists already placed in others: each insertion alone looks one level deep,
    // the chain is 200 deep. Freed recursively, a long enough chain would exhaust the stack.
    PickleWriter chain;
    chain.op(']').op('r').raw(std::string(4, '\0')).op('0');
    for (std::uint32_t i = 1; i <= 200; ++i) {
        std::string previous(4, '\0'), current(4, '\0');
        for (int b = 0; b < 4; ++b) {
            previous[static_cast<std::size_t>(b)] = static_cast<char>(((i - 1) >> (8 * b)) & 0xff);
            current[static_cast<std::size_t>(b)] = static_cast<char>((i >> (8 * b)) & 0xff);
        }
        chain.op('j').raw(previous).op(']').op('r').raw(current).op('a').op('0');
    }
    chain.op('j').raw(std::string(4, '\0'));
    CHECK_CONTAINS(pickle_error(dir, chain.finish()), "modified after being placed in another");
}

TEST_CASE("a zip bomb's data.pkl is refused from its sizes, before anything is inflated") {
    test::TempDir dir;
    // A "deflated" data.pkl of 100 bytes claiming 400 MB: past what deflate can reach (~1032:1).
    const std::string junk(100, '\x03');
    test::RawZip zip;
    zip.central("archive/data.pkl", zip.local("archive/data.pkl", junk, 8, 400000000u), junk, 8, 400000000u);
    CHECK_CONTAINS(open_ckpt_error(dir, zip.finish()), "claims 400000000 bytes from 100 compressed");
    // Over the pickle size limit whatever the ratio: refused before any buffer is sized from it.
    test::RawZip big;
    big.central("archive/data.pkl", big.local("archive/data.pkl", junk, 8, 0xfffffff0u), junk, 8, 0xfffffff0u);
    CHECK_CONTAINS(open_ckpt_error(dir, big.finish()), "over the limit");
}

TEST_CASE("zip entries that overlap or share a name are refused") {
    test::TempDir dir;
    PickleWriter p;
    p.op('}').op('(');
    p.str("a").tensor("FloatStorage", "0", 16, 0, {16}, {1});
    p.str("b").tensor("FloatStorage", "1", 4, 0, {4}, {1});
    p.op('u');
    const std::string pickle = p.finish();
    // archive/data/1 is a complete entry hidden inside the bytes of archive/data/0.
    const std::string inner_name = "archive/data/1", inner_data(16, '\x01');
    test::RawZip inner;
    inner.local(inner_name, inner_data);
    std::string outer_data = inner.finish().substr(0, 30 + inner_name.size() + inner_data.size());
    outer_data.resize(64, '\0');
    test::RawZip zip;
    zip.add("archive/data.pkl", pickle);
    const std::uint32_t outer = zip.local("archive/data/0", outer_data);
    zip.central("archive/data/0", outer, outer_data);
    zip.central(inner_name, outer + 30 + 14, inner_data);  // 14: the length of "archive/data/0"
    CHECK_CONTAINS(open_ckpt_error(dir, zip.finish()), "overlap");

    test::RawZip twice;
    twice.add("archive/data.pkl", pickle);
    twice.add("archive/data/0", std::string(64, '\0'));
    twice.add("archive/data/0", std::string(64, '\x7f'));
    CHECK_CONTAINS(open_ckpt_error(dir, twice.finish()), "'archive/data/0' appears twice");
}

TEST_CASE("checkpoint shapes whose element or byte counts overflow are refused when opened") {
    test::TempDir dir;
    // A stride-0 view of one float claiming 2^31 x 2^31 x 2^31 elements.
    PickleWriter p;
    p.op('}').op('(').str("w").tensor("FloatStorage", "0", 1, 0, {2147483647, 2147483647, 2147483647}, {0, 0, 0}).op('u');
    CHECK_CONTAINS(open_ckpt_error(dir, ckpt_bytes(p.finish(), {{"0", std::string(4, '\0')}})), "tensor 'w': shape overflows");
    // 2^62 elements of a float storage: the byte count overflows before it is compared.
    PickleWriter q;
    q.op('}').op('(').str("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
    q.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").raw(long1(std::int64_t{1} << 62)).op('t').op('Q');
    q.integer(0).int_tuple({1}).int_tuple({1}).op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    q.op('u');
    CHECK_CONTAINS(open_ckpt_error(dir, ckpt_bytes(q.finish(), {{"0", std::string(4, '\0')}})), "overflow");
}

TEST_CASE("safetensors offsets count from the data section, so none can reach into the header") {
    // Offsets that would land inside the header if they were absolute: with no data section they
    // point past its end and are refused; with data, the view starts after the header.
    const std::string header = R"({"t":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})";
    const std::string empty = safetensors(header, "");
    CHECK_THROWS_STATUS(io::SafetensorsFile::from_memory(empty.data(), empty.size(), "aimed.safetensors"),
                        Status::bad_model, "end past the data section (0 bytes)");
    std::string fp = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    fp.resize((fp.size() + 7) / 8 * 8, ' ');  // data 8-aligned: viewed in place, not copied
    std::string file = safetensors(fp, std::string(8, '\0'));
    const auto f = io::SafetensorsFile::from_memory(file.data(), file.size(), "aimed.safetensors");
    const Tensor t = f.get("t");
    REQUIRE_FALSE(t.owns_storage());
    CHECK(static_cast<const char*>(t.raw_data()) == file.data() + 8 + fp.size());
    // A header nested a million levels deep is refused without exhausting the stack.
    const std::string deep = "{\"__metadata__\":" + std::string(1000000, '[') + std::string(1000000, ']') + "}";
    const std::string nested = safetensors(deep, "");
    CHECK_THROWS_STATUS(io::SafetensorsFile::from_memory(nested.data(), nested.size(), "deep.safetensors"),
                        Status::bad_model, "deep.safetensors");
}

TEST_CASE("images claiming 100k x 100k pixels are refused from their headers in every format") {
    // PNG IHDR, BMP BITMAPINFOHEADER, GIF logical screen and JPEG SOF0 headers, each followed by
    // (almost) nothing: only the header is read, and the message gives the claimed size.
    std::string png = "\x89PNG\r\n\x1a\n";
    png += std::string("\0\0\0\x0dIHDR", 8) + std::string("\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00", 13);
    png += std::string("\0\0\0\0", 4);  // CRC (stb does not check it)
    CHECK_THROWS_STATUS(decode_image(png.data(), png.size()), Status::bad_image, "100000x100000, larger than the limit");
    std::string bmp = "BM" + std::string(12, '\0');
    bmp[10] = 54;
    bmp += std::string("\x28\0\0\0", 4) + std::string("\xa0\x86\x01\0\xa0\x86\x01\0", 8) + std::string("\x01\0\x18\0", 4);
    bmp += std::string(24, '\0');
    CHECK_THROWS_STATUS(decode_image(bmp.data(), bmp.size()), Status::bad_image, "100000x100000, larger than the limit");
    const std::string gif = std::string("GIF89a\xff\xff\xff\xff\x00\x00\x00", 13) + std::string("\x2c", 1);
    CHECK_THROWS_STATUS(decode_image(gif.data(), gif.size()), Status::bad_image, "65535x65535, larger than the limit");
    std::string jpeg = std::string("\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00\xff\xd9", 23);
    CHECK_THROWS_STATUS(decode_image(jpeg.data(), jpeg.size()), Status::bad_image, "65535x65535, larger than the limit");
    jpeg[7] = '\x27', jpeg[8] = '\x10';  // 65535 wide, 10000 high
    CHECK_THROWS_STATUS(decode_image(jpeg.data(), jpeg.size()), Status::bad_image, "65535x10000, larger than the limit");
    // Through the C API, a pixel view claiming that much over a 16-byte buffer is refused unread.
    const std::uint8_t tiny[16] = {};
    const unclip_image_view view{tiny, 100000, 100000, 3, 0};
    test::TempDir dir;
    CHECK(unclip_image_save_png(&view, (dir / "x.png").string().c_str()) == UNCLIP_STATUS_BAD_IMAGE);
    CHECK(std::string(unclip_last_error()).find("100000x100000") != std::string::npos);
}

}  // TEST_SUITE
