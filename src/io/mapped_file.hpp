#pragma once
// A whole file in memory: a private copy-on-write mapping where the platform has mmap (so a
// caller that writes into a view changes only its own pages, never the file), else a read buffer.
#include <cstddef>
#include <memory>
#include <string>

namespace unclip::io {

class MappedFile {
public:
    // Throws Error(Status::io) naming the path and the system's reason.
    static std::shared_ptr<const MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    MappedFile() = default;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    bool mapped_ = false;
};

}  // namespace unclip::io
