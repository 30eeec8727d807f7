#include <cstdio>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "unclip/io/safetensors.hpp"

namespace unclip::io {

namespace {
constexpr std::size_t kChunkBytes = std::size_t{4} << 20;

[[noreturn]] void write_failed(const std::string& path, const std::string& what) {
    throw Error(Status::io, "write '" + path + "': " + what);
}

struct FileCloser {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string path) : path_(std::move(path)) {}

void SafetensorsWriter::add(const std::string& name, const Tensor& tensor) {
    if (!tensor.defined()) throw Error(Status::invalid_argument, "safetensors writer: tensor '" + name + "' is undefined");
    const Tensor host = tensor.device() == Device::cpu ? tensor.contiguous() : tensor.to(Device::cpu);
    add(name, host.dtype(), host.shape(), [host](std::byte* dst, std::size_t offset, std::size_t bytes) {
        std::memcpy(dst, static_cast<const std::byte*>(host.raw_data()) + offset, bytes);
    });
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const Shape& shape, Producer producer) {
    if (finished_) throw Error(Status::invalid_argument, "safetensors writer: add after finish");
    if (name.empty() || name == "__metadata__")
        throw Error(Status::invalid_argument, "safetensors writer: invalid tensor name '" + name + "'");
    for (const auto& p : pending_)
        if (p.name == name) throw Error(Status::invalid_argument, "safetensors writer: tensor '" + name + "' added twice");
    pending_.push_back({name, dtype, shape, std::move(producer)});
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void SafetensorsWriter::finish() {
    if (finished_) throw Error(Status::invalid_argument, "safetensors writer: finish called twice");
    finished_ = true;

    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& p : pending_) {
        const std::uint64_t bytes = static_cast<std::uint64_t>(p.shape.numel()) * dtype_size(p.dtype);
        std::vector<std::int64_t> dims(p.shape.begin(), p.shape.end());
        header[p.name] = {{"dtype", std::string(dtype_name(p.dtype))}, {"shape", dims},
                          {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned

    const std::string partial = path_ + ".partial";
    std::unique_ptr<std::FILE, FileCloser> out(std::fopen(partial.c_str(), "wb"));
    if (!out) write_failed(path_, std::string("cannot create '") + partial + "': " + std::strerror(errno));
    unsigned char size_bytes[8];
    for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));
    bool ok = std::fwrite(size_bytes, 1, 8, out.get()) == 8 && std::fwrite(text.data(), 1, text.size(), out.get()) == text.size();

    std::vector<std::byte> chunk;
    for (const auto& p : pending_) {
        const std::size_t bytes = static_cast<std::size_t>(p.shape.numel()) * dtype_size(p.dtype);
        for (std::size_t done = 0; ok && done < bytes;) {
            const std::size_t n = std::min(kChunkBytes, bytes - done);
            chunk.resize(n);
            p.producer(chunk.data(), done, n);
            ok = std::fwrite(chunk.data(), 1, n, out.get()) == n;
            done += n;
        }
    }
    ok = ok && std::fflush(out.get()) == 0;
    const int err = errno;
    out.reset();
    if (!ok) {
        std::remove(partial.c_str());
        write_failed(path_, std::strerror(err));
    }
    if (std::rename(partial.c_str(), path_.c_str()) != 0) {
        const int rename_err = errno;
        std::remove(partial.c_str());
        write_failed(path_, std::string("cannot rename the finished file into place: ") + std::strerror(rename_err));
    }
}

}  // namespace unclip::io
