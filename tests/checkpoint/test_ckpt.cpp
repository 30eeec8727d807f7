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
