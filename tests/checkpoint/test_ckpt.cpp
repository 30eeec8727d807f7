// The .ckpt reader on crafted archives: what a state dict needs loads, zero-copy and with its
// strides; foreign globals and opcodes, bad zips and inconsistent storages are errors naming
// the culprit. Nothing in a pickle is ever executed, so a foreign global fails at GLOBAL.
#include <fstream>

#include "checkpoint_helpers.hpp"
#include "unclip/io/ckpt.hpp"

using namespace unclip;
using test::PickleWriter;

namespace {

// {'state_dict': {name: tensor, ...}} around the tensor opcodes `body` writes.
std::string state_dict_pickle(const std::function<void(PickleWriter&)>& body) {
    PickleWriter p;
    p.op('}').op('(').str("state_dict");
    p.global("collections", "OrderedDict").op(')').op('R').op('(');
    body(p);
    p.op('u');  // SETITEMS into the state dict
    p.op('u');  // SETITEMS into the outer dict
    return p.finish();
}

std::filesystem::path write_ckpt(const test::TempDir& dir, const std::string& pickle,
                                 std::vector<test::ZipItem> storages) {
    const auto path = dir / "model.ckpt";
    std::vector<test::ZipItem> items{{"archive/data.pkl", pickle}, {"archive/byteorder", "little"}};
    for (auto& s : storages) {
        s.name = "archive/data/" + s.name;
        items.push_back(std::move(s));
    }
    test::write_zip(path, items);
    return path;
}

const std::vector<float> kSix{1, 2, 3, 4, 5, 6};

}  // namespace

TEST_SUITE("checkpoint") {

TEST_CASE("a .ckpt tensor keeps its storage offset and strides and converts to the right values") {
    test::TempDir dir;
    // 'a' is rows 0..1 of a [3, 2] storage read transposed: size [2, 2], stride [1, 2], offset 1
    const auto pickle = state_dict_pickle([](PickleWriter& p) {
        p.str("a").tensor("FloatStorage", "0", 6, 1, {2, 2}, {1, 2});
        p.str("b").tensor("FloatStorage", "0", 6, 0, {6}, {1});  // shares the storage
    });
    const auto path = write_ckpt(dir, pickle, {{"0", test::floats(kSix)}});
    const auto file = io::CkptFile::open(path.string());
    REQUIRE(file.entries().size() == 2);
    const Tensor a = file.get("a");
    CHECK(a.shape() == Shape{2, 2});
    const Tensor dense = a.contiguous();
    // element (i, j) = storage[1 + i + 2j]
    CHECK(dense.data<const float>()[0] == 2.0f);
    CHECK(dense.data<const float>()[1] == 4.0f);
    CHECK(dense.data<const float>()[2] == 3.0f);
    CHECK(dense.data<const float>()[3] == 5.0f);
    const Tensor b = file.get("b");
    CHECK(b.data<const float>()[5] == 6.0f);
}

TEST_CASE("a .ckpt saved from a bare state dict (no 'state_dict' key) loads too") {
    test::TempDir dir;
    PickleWriter p;
    p.global("collections", "OrderedDict").op(')').op('R').op('(');
    p.str("w").tensor("HalfStorage", "7", 2, 0, {2}, {1});
    p.op('u');
    const std::string halves("\x00\x3c\x00\x40", 4);  // 1.0 and 2.0 in binary16
    const auto path = write_ckpt(dir, p.finish(), {{"7", halves}});
    const Tensor w = io::CkptFile::open(path.string()).get("w");
    CHECK(w.dtype() == DType::f16);
    CHECK(static_cast<float>(w.data<const Half>()[1]) == 2.0f);
}

TEST_CASE("a pickle naming a foreign global is rejected with the global's name, before anything runs") {
    test::TempDir dir;
    PickleWriter p;
    p.global("os", "system").op('(').str("touch " + (dir / "pwned").string()).op('t').op('R');
    const auto path = write_ckpt(dir, p.finish(), {});
    CHECK_THROWS_STATUS(io::CkptFile::open(path.string()), Status::bad_model, "os.system");
    CHECK_FALSE(std::filesystem::exists(dir / "pwned"));
}

TEST_CASE("a pickle global outside torch's allowed storages is rejected, even under torch") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) {
        p.str("w").global("torch", "load").op(')').op('R');
    });
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, pickle, {}).string()), Status::bad_model, "torch.load");
}

TEST_CASE("a pickle opcode outside the state-dict set is rejected with its code") {
    test::TempDir dir;
    PickleWriter p;
    p.op('i').raw("builtins\neval\n");  // INST: calls a class by name
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, p.finish(), {}).string()), Status::bad_model, "opcode 0x69");
}

TEST_CASE("deeply nested pickle containers are rejected before they exhaust memory") {
    test::TempDir dir;
    PickleWriter p;
    for (int i = 0; i < 100; ++i) p.op(']');
    for (int i = 0; i < 99; ++i) p.op('a');
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, p.finish(), {}).string()), Status::bad_model, "nested deeper");
}

TEST_CASE("a truncated pickle is an error naming data.pkl") {
    test::TempDir dir;
    std::string pickle = state_dict_pickle([](PickleWriter& p) { p.str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}); });
    pickle.resize(pickle.size() / 2);
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, pickle, {{"0", test::floats(kSix)}}).string()),
                        Status::bad_model, "data.pkl: truncated");
}

TEST_CASE("a compressed tensor storage is rejected: tensor data must be mappable") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) { p.str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}); });
    test::ZipItem storage{"0", test::floats(kSix), true};
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, pickle, {storage}).string()), Status::bad_model,
                        "'archive/data/0' is compressed");
}

TEST_CASE("a storage shorter than its declared element count is rejected") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) { p.str("w").tensor("FloatStorage", "0", 600, 0, {6}, {1}); });
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, pickle, {{"0", test::floats(kSix)}}).string()),
                        Status::bad_model, "tensor 'w': storage '0' holds 24 bytes");
}

TEST_CASE("a tensor reaching past the end of its storage is rejected") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) { p.str("w").tensor("FloatStorage", "0", 6, 2, {3, 2}, {2, 1}); });
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, pickle, {{"0", test::floats(kSix)}}).string()),
                        Status::bad_model, "tensor 'w': elements reach past the end");
}

TEST_CASE("a missing storage entry is named") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) { p.str("w").tensor("FloatStorage", "9", 6, 0, {6}, {1}); });
    CHECK_THROWS_STATUS(io::CkptFile::open(write_ckpt(dir, pickle, {}).string()), Status::bad_model,
                        "'archive/data/9' is missing");
}

TEST_CASE("a zip without data.pkl is not a PyTorch checkpoint") {
    test::TempDir dir;
    test::write_zip(dir / "x.ckpt", {{"something.txt", "hello"}});
    CHECK_THROWS_STATUS(io::CkptFile::open((dir / "x.ckpt").string()), Status::bad_model, "no <root>/data.pkl");
}

TEST_CASE("a truncated .ckpt is an error, not a crash") {
    test::TempDir dir;
    std::ifstream in(test::golden("tiny_unclip_l.ckpt"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 1000);
    for (const std::size_t keep : {bytes.size() / 2, bytes.size() - 10, std::size_t{100}}) {
        INFO("kept " << keep << " bytes");
        test::write_bytes(dir / "cut.ckpt", bytes.substr(0, keep));
        CHECK_THROWS_STATUS(io::load_checkpoint((dir / "cut.ckpt").string(), test::reduced()), Status::bad_model,
                            "cut.ckpt");
    }
}

TEST_CASE("integer storages load as entries but their tensors are refused as unsupported") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) { p.str("steps").tensor("LongStorage", "0", 1, 0, {}, {}); });
    const auto file = io::CkptFile::open(write_ckpt(dir, pickle, {{"0", std::string(8, '\0')}}).string());
    REQUIRE(file.find("steps") != nullptr);
    CHECK(file.find("steps")->dtype_name == "I64");
    CHECK_THROWS_STATUS(file.get("steps"), Status::bad_model, "tensor 'steps': dtype I64 not supported");
}

}  // TEST_SUITE

namespace {

std::uint32_t crc32_of(const std::string& bytes) {
    std::uint32_t crc = 0xffffffffu;
    for (unsigned char c : bytes) {
        crc ^= c;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

struct Le {
    std::string out;
    Le& u16(std::uint64_t v) { for (int i = 0; i < 2; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff); return *this; }
    Le& u32(std::uint64_t v) { for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff); return *this; }
    Le& u64(std::uint64_t v) { for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff); return *this; }
    Le& bytes(const std::string& s) { out += s; return *this; }
};

std::string local_header(const std::string& name, const std::string& data) {
    return Le{}.u32(0x04034b50).u16(45).u16(0).u16(0).u32(0).u32(crc32_of(data)).u32(data.size()).u32(data.size())
        .u16(name.size()).u16(0).bytes(name).out;
}

// A central record; offsets past 4 GiB go to a zip64 extra field, as PyTorch's writer does.
std::string central_record(const std::string& name, const std::string& data, std::uint64_t offset) {
    const bool far = offset >= 0xffffffffu;
    Le r;
    r.u32(0x02014b50).u16(45).u16(45).u16(0).u16(0).u32(0).u32(crc32_of(data)).u32(data.size()).u32(data.size())
        .u16(name.size()).u16(far ? 12 : 0).u16(0).u16(0).u16(0).u32(0).u32(far ? 0xffffffffu : offset).bytes(name);
    if (far) r.u16(1).u16(8).u64(offset);
    return r.out;
}

}  // namespace

TEST_SUITE("checkpoint") {

TEST_CASE("a storage whose zip entry starts past 4 GiB (zip64) is found and mapped") {
    test::TempDir dir;
    const auto pickle = state_dict_pickle([](PickleWriter& p) { p.str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}); });
    const std::string pkl_name = "archive/data.pkl", data_name = "archive/data/0", data = test::floats(kSix);
    const std::uint64_t far = (std::uint64_t{1} << 32) + 4096;  // a hole below it keeps the file sparse

    const std::string first = local_header(pkl_name, pickle) + pickle;
    const std::string second = local_header(data_name, data) + data;
    const std::uint64_t central_at = far + second.size();
    const std::string central = central_record(pkl_name, pickle, 0) + central_record(data_name, data, far);
    const std::uint64_t zip64_end_at = central_at + central.size();
    Le tail;
    tail.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(2).u64(2).u64(central.size()).u64(central_at);
    tail.u32(0x07064b50).u32(0).u64(zip64_end_at).u32(1);
    tail.u32(0x06054b50).u16(0).u16(0).u16(2).u16(2).u32(central.size()).u32(0xffffffffu).u16(0);

    const auto path = dir / "far.ckpt";
    {
        std::ofstream out(path, std::ios::binary);
        out.write(first.data(), static_cast<std::streamsize>(first.size()));
        out.seekp(static_cast<std::streamoff>(far));
        const std::string rest = second + central + tail.out;
        out.write(rest.data(), static_cast<std::streamsize>(rest.size()));
        REQUIRE(out.good());
    }
    const auto file = io::CkptFile::open(path.string());
    const Tensor w = file.get("w");
    REQUIRE(w.shape() == Shape{6});
    CHECK(w.data<const float>()[0] == 1.0f);
    CHECK(w.data<const float>()[5] == 6.0f);
}

}  // TEST_SUITE
