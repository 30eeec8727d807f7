#pragma once
// What the checkpoint tests share: the golden paths, tensor equality, crafted safetensors files
// (any dtype string, for bad input), crafted zip archives and pickles for .ckpt files.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/io/safetensors.hpp"

namespace unclip::test {

inline std::string golden(const std::string& name) { return data_path("checkpoint/" + name).string(); }

inline io::LoadOptions reduced() {
    io::LoadOptions options;
    options.allow_reduced = true;
    return options;
}

// Same dtype, shape and bytes (row-major, whatever the strides).
inline bool bit_identical(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    const Tensor ca = a.contiguous(), cb = b.contiguous();
    return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

// Names where two weight maps differ in presence or content; empty when identical.
inline std::vector<std::string> differences(const nn::WeightMap& a, const nn::WeightMap& b) {
    std::vector<std::string> out;
    for (const auto& [name, t] : a.tensors()) {
        const Tensor* other = b.find(name);
        if (!other || !bit_identical(t, *other)) out.push_back(name);
    }
    for (const auto& [name, t] : b.tensors())
        if (!a.find(name)) out.push_back(name + " (only in the second)");
    return out;
}

struct RawTensor {
    std::string name, dtype;
    std::vector<std::int64_t> dims;
    std::string bytes;
};

// A safetensors file written byte by byte, so that tests can use dtypes the writer refuses.
inline void write_raw_safetensors(const std::filesystem::path& path, const std::vector<RawTensor>& tensors) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::string data;
    for (const auto& t : tensors) {
        header[t.name] = {{"dtype", t.dtype}, {"shape", t.dims}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
        data += t.bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string size(8, '\0');
    for (int i = 0; i < 8; ++i) size[static_cast<std::size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
    write_bytes(path, size + text + data);
}

// Every tensor of a safetensors file as raw entries, to be edited and written back.
inline std::vector<RawTensor> raw_tensors(const std::string& path) {
    const auto file = io::SafetensorsFile::open(path);
    std::vector<RawTensor> out;
    for (const auto& e : file.entries()) {
        RawTensor t{e.name, e.dtype_name, e.dims, std::string(e.end - e.begin, '\0')};
        if (e.dtype) {
            const Tensor v = file.get(e.name).contiguous();
            std::memcpy(t.bytes.data(), v.raw_data(), t.bytes.size());
        } else {
            // integer tensors of the golden file: read through a copy of the raw data section
            std::ifstream in(path, std::ios::binary);
            std::uint64_t header = 0;
            in.read(reinterpret_cast<char*>(&header), 8);
            in.seekg(static_cast<std::streamoff>(8 + header + e.begin));
            in.read(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
        }
        out.push_back(std::move(t));
    }
    return out;
}

// A zip archive; entries are stored unless `compress` is set. Implemented with minizip's writer.
struct ZipItem {
    std::string name, bytes;
    bool compress = false;
};
void write_zip(const std::filesystem::path& path, const std::vector<ZipItem>& items);

// A protocol-2 pickle written opcode by opcode.
class PickleWriter {
public:
    PickleWriter() { bytes_ = "\x80\x02"; }
    PickleWriter& op(char c) { bytes_ += c; return *this; }
    PickleWriter& raw(const std::string& s) { bytes_ += s; return *this; }
    PickleWriter& str(const std::string& s) {
        bytes_ += 'X';
        for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((s.size() >> (8 * i)) & 0xff);
        bytes_ += s;
        return *this;
    }
    PickleWriter& integer(int v) {  // BININT
        bytes_ += 'J';
        for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((static_cast<std::uint32_t>(v) >> (8 * i)) & 0xff);
        return *this;
    }
    PickleWriter& global(const std::string& module, const std::string& name) {
        bytes_ += 'c' + module + '\n' + name + '\n';
        return *this;
    }
    PickleWriter& int_tuple(const std::vector<int>& v) {
        op('(');
        for (int x : v) integer(x);
        return op('t');
    }
    // _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
    PickleWriter& tensor(const std::string& storage_type, const std::string& key, int numel, int offset,
                         const std::vector<int>& size, const std::vector<int>& stride) {
        global("torch._utils", "_rebuild_tensor_v2").op('(');
        op('(').str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel).op('t').op('Q');
        integer(offset).int_tuple(size).int_tuple(stride).op('\x89');
        global("collections", "OrderedDict").op(')').op('R');
        return op('t').op('R');
    }
    std::string finish() { return bytes_ + '.'; }

private:
    std::string bytes_;
};

inline std::string floats(const std::vector<float>& v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(s.data(), v.data(), s.size());
    return s;
}

}  // namespace unclip::test
