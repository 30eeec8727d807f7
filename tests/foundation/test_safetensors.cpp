#include <cstring>
#include <filesystem>
#include <numeric>
#include <vector>

#include "test_support.hpp"
#include "unclip/io/safetensors.hpp"

using namespace unclip;
using io::SafetensorsFile;
using io::SafetensorsWriter;

namespace {
std::string le64(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}
std::string file_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// Opens crafted bytes from disk, the way users' files arrive.
void open_crafted(const test::TempDir& dir, const std::string& bytes) {
    const auto path = dir / "crafted.safetensors";
    test::write_bytes(path, bytes);
    SafetensorsFile::open(path.string());
}

Tensor iota(DType dtype, const Shape& shape) {
    Tensor f = Tensor::empty(DType::f32, shape);
    float* p = f.data<float>();
    for (std::int64_t i = 0; i < f.numel(); ++i) p[i] = static_cast<float>(i % 1000) * 0.25f - 7.0f;
    return f.to(dtype);
}
}  // namespace

TEST_SUITE("safetensors") {

TEST_CASE("writer and reader round-trip dtypes, ranks, empty tensors and metadata") {
    test::TempDir dir;
    const auto path = (dir / "model.safetensors").string();
    SafetensorsWriter writer(path);
    const Tensor a = iota(DType::f32, {2, 3, 4, 5});
    const Tensor b = iota(DType::f16, {7, 3});
    const Tensor c = iota(DType::bf16, {9});
    const Tensor s = iota(DType::f32, Shape{});
    const Tensor e = Tensor::zeros(DType::f32, {0, 4});
    writer.add("a.weight", a);
    writer.add("b", b);
    writer.add("c", c);
    writer.add("scalar", s);
    writer.add("empty", e);
    writer.set_metadata("format", "pt");
    writer.finish();
    CHECK_FALSE(std::filesystem::exists(path + ".partial"));

    const auto file = SafetensorsFile::open(path);
    CHECK(file.entries().size() == 5);
    CHECK(file.metadata().at("format") == "pt");
    for (const auto& [name, expected] : {std::pair{"a.weight", a}, {"b", b}, {"c", c}, {"scalar", s}, {"empty", e}}) {
        INFO("tensor " << name);
        const Tensor got = file.get(name);
        CHECK(got.dtype() == expected.dtype());
        CHECK(got.shape() == expected.shape());
        CHECK(std::memcmp(got.raw_data(), expected.raw_data(), expected.nbytes()) == 0);
    }
    const Tensor view = file.get("a.weight");
    CHECK_FALSE(view.owns_storage());  // zero-copy: a view into the mapping
    CHECK(reinterpret_cast<std::uintptr_t>(view.raw_data()) % 4 == 0);
}

TEST_CASE("views stay valid after the file object is gone, and writing to them never touches the file") {
    test::TempDir dir;
    const auto path = (dir / "m.safetensors").string();
    SafetensorsWriter writer(path);
    writer.add("x", iota(DType::f32, {16}));
    writer.finish();
    Tensor view;
    {
        const auto file = SafetensorsFile::open(path);
        view = file.get("x");
    }
    CHECK(view.data<float>()[1] == -6.75f);
    view.data<float>()[1] = 100.0f;  // a private copy-on-write page
    CHECK(SafetensorsFile::open(path).get("x").data<float>()[1] == -6.75f);
}

TEST_CASE("the writer streams producer-generated tensors larger than its chunk") {
    test::TempDir dir;
    const auto path = (dir / "big.safetensors").string();
    const std::int64_t n = 3 * 1024 * 1024 + 5;  // 12 MiB of f32: several 4 MiB chunks
    SafetensorsWriter writer(path);
    writer.add("big", DType::f32, {n}, [](std::byte* dst, std::size_t offset, std::size_t bytes) {
        for (std::size_t i = 0; i < bytes / 4; ++i) {
            const float v = static_cast<float>((offset / 4 + i) % 4099);
            std::memcpy(dst + 4 * i, &v, 4);
        }
    });
    writer.finish();
    const Tensor big = SafetensorsFile::open(path).get("big");
    const float* p = big.data<float>();
    bool all = true;
    for (std::int64_t i = 0; i < n; ++i) all = all && p[i] == static_cast<float>(i % 4099);
    CHECK(all);
}

TEST_CASE("the writer refuses duplicate or empty names and reports unwritable paths") {
    test::TempDir dir;
    SafetensorsWriter writer((dir / "w.safetensors").string());
    writer.add("x", iota(DType::f32, {2}));
    CHECK_THROWS_STATUS(writer.add("x", iota(DType::f32, {2})), Status::invalid_argument, "added twice");
    CHECK_THROWS_STATUS(writer.add("", iota(DType::f32, {2})), Status::invalid_argument, "invalid tensor name");
    SafetensorsWriter nowhere((dir / "missing-dir" / "w.safetensors").string());
    nowhere.add("x", iota(DType::f32, {2}));
    CHECK_THROWS_STATUS(nowhere.finish(), Status::io, "missing-dir");
}

TEST_CASE("unaligned data is copied into aligned storage") {
    test::TempDir dir;
    // Header of odd length and no padding: the data section starts at an odd address offset.
    const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    REQUIRE(header.size() % 4 != 0);
    float values[2] = {1.5f, -2.0f};
    const auto path = dir / "odd.safetensors";
    test::write_bytes(path, file_bytes(header, std::string(reinterpret_cast<const char*>(values), 8)));
    const Tensor x = SafetensorsFile::open(path.string()).get("x");
    CHECK(reinterpret_cast<std::uintptr_t>(x.raw_data()) % 4 == 0);
    CHECK(x.data<float>()[0] == 1.5f);
    CHECK(x.data<float>()[1] == -2.0f);
}

TEST_CASE("tensors of dtypes unclip does not compute with are listed but refused by name") {
    test::TempDir dir;
    const std::string header =
        R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})";
    const auto path = dir / "mixed.safetensors";
    test::write_bytes(path, file_bytes(header, std::string(20, '\0')));
    const auto file = SafetensorsFile::open(path.string());
    REQUIRE(file.find("ids") != nullptr);
    CHECK(file.find("ids")->dtype_name == "I64");
    CHECK_THROWS_STATUS(file.get("ids"), Status::bad_model, "tensor 'ids': dtype I64 not supported");
    CHECK_NOTHROW(file.get("w"));
    CHECK_THROWS_STATUS(file.get("nope"), Status::bad_model, "tensor 'nope': not in the file");
}

TEST_CASE("malformed files are refused with an error naming the file, the tensor and the reason") {
    test::TempDir dir;
    const auto path = (dir / "crafted.safetensors").string();
    auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, const std::string& offsets) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
    };
    const std::string ok_data(64, '\0');

    SUBCASE("truncated below the size field") {
        CHECK_THROWS_STATUS(open_crafted(dir, "abc"), Status::bad_model, "shorter than the 8-byte header size");
    }
    SUBCASE("header size past the end of the file") {
        CHECK_THROWS_STATUS(open_crafted(dir, le64(1000) + "{}"), Status::bad_model, "runs past the end of the file");
    }
    SUBCASE("header size over the limit") {
        CHECK_THROWS_STATUS(open_crafted(dir, le64(200ull * 1000 * 1000) + "{}"), Status::bad_model, "exceeds the limit");
    }
    SUBCASE("header size that would overflow when added to 8") {
        CHECK_THROWS_STATUS(open_crafted(dir, le64(~0ull) + "{}"), Status::bad_model, "header size");
    }
    SUBCASE("header is not JSON") {
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes("{not json", ok_data)), Status::bad_model, "not valid JSON");
    }
    SUBCASE("header is JSON but not an object") {
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes("[1,2]", ok_data)), Status::bad_model, "not a JSON object");
    }
    SUBCASE("truncated data section") {
        const std::string h = "{" + entry("w", "F32", "[4,4]", "[0,64]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, std::string(10, '\0'))), Status::bad_model,
                            "tensor 'w': data_offsets [0,64] end past the data section (10 bytes)");
    }
    SUBCASE("offsets out of range") {
        const std::string h = "{" + entry("w", "F32", "[1]", "[60,68]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "tensor 'w'");
    }
    SUBCASE("reversed offsets") {
        const std::string h = "{" + entry("w", "F32", "[1]", "[8,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "tensor 'w': data_offsets [8,4] are reversed");
    }
    SUBCASE("overlapping tensors") {
        const std::string h = "{" + entry("a", "F32", "[4]", "[0,16]") + "," + entry("b", "F32", "[4]", "[8,24]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "tensor 'b': data overlaps tensor 'a'");
    }
    SUBCASE("byte range disagrees with shape and dtype") {
        const std::string h = "{" + entry("w", "F16", "[4,4]", "[0,64]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "tensor 'w': shape [4,4] of F16 needs 32 bytes");
    }
    SUBCASE("unknown dtype") {
        const std::string h = "{" + entry("w", "F31", "[1]", "[0,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "tensor 'w': unknown dtype 'F31'");
    }
    SUBCASE("shape overflowing 64 bits") {
        const std::string h = "{" + entry("w", "F32", "[4294967296,4294967296]", "[0,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "tensor 'w': shape [4294967296,4294967296] overflows");
    }
    SUBCASE("shape beyond int64") {
        const std::string h = "{" + entry("w", "U8", "[18446744073709551615]", "[0,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "overflows");
    }
    SUBCASE("negative and fractional dimensions") {
        const std::string neg = "{" + entry("w", "F32", "[-1]", "[0,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(neg, ok_data)), Status::bad_model, "tensor 'w': every shape entry must be a non-negative integer");
        const std::string frac = "{" + entry("w", "F32", "[1.5]", "[0,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(frac, ok_data)), Status::bad_model, "non-negative integer");
    }
    SUBCASE("duplicate names") {
        const std::string h = "{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("w", "F32", "[1]", "[4,8]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "header names 'w' twice");
    }
    SUBCASE("non-UTF-8 names") {
        const std::string h = "{" + entry("w\xff\xfe", "F32", "[1]", "[0,4]") + "}";
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(h, ok_data)), Status::bad_model, "UTF-8");
    }
    SUBCASE("missing fields, extra fields and wrong types") {
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", ok_data)), Status::bad_model, "tensor 'w': entry has no 'data_offsets'");
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", ok_data)), Status::bad_model, "unexpected field 'x'");
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", ok_data)), Status::bad_model, "dtype is not a string");
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", ok_data)), Status::bad_model, "not [begin, end]");
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"w":[1,2]})", ok_data)), Status::bad_model, "tensor 'w': entry is not a JSON object");
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"__metadata__":{"k":1}})", ok_data)), Status::bad_model, "__metadata__ value of 'k'");
        CHECK_THROWS_STATUS(open_crafted(dir, file_bytes(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", ok_data)), Status::bad_model, "empty name");
    }
    SUBCASE("file names in the message") {
        try {
            open_crafted(dir, "abc");
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find(path) != std::string::npos);
        }
    }
}

TEST_CASE("missing files and directories are I/O errors naming the path") {
    test::TempDir dir;
    const auto missing = (dir / "nope.safetensors").string();
    CHECK_THROWS_STATUS(SafetensorsFile::open(missing), Status::io, missing);
    CHECK_THROWS_STATUS(SafetensorsFile::open(dir.path().string()), Status::io, "not a regular file");
}

}  // TEST_SUITE
