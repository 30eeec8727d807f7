#include "io/mapped_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>

#include "unclip/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define UNCLIP_HAVE_MMAP 1
#endif

namespace unclip::io {

namespace {
[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw Error(Status::io, "open '" + path + "': " + what);
}
}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
    std::shared_ptr<MappedFile> file(new MappedFile());
#if UNCLIP_HAVE_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, std::strerror(errno));
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int err = errno;
        ::close(fd);
        fail(path, std::strerror(err));
    }
    if (!S_ISREG(info.st_mode)) {
        ::close(fd);
        fail(path, "not a regular file");
    }
    file->size_ = static_cast<std::size_t>(info.st_size);
    if (file->size_ > 0) {
        void* p = ::mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        const int err = errno;
        ::close(fd);
        if (p == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(err));
        file->data_ = static_cast<const std::byte*>(p);
        file->mapped_ = true;
    } else {
        ::close(fd);
    }
#else
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(path, "cannot open for reading");
    file->size_ = static_cast<std::size_t>(in.tellg());
    auto* buffer = new (std::nothrow) std::byte[file->size_ ? file->size_ : 1];
    if (!buffer) throw Error(Status::out_of_memory, "open '" + path + "': cannot allocate a buffer for the file");
    in.seekg(0);
    in.read(reinterpret_cast<char*>(buffer), static_cast<std::streamsize>(file->size_));
    file->data_ = buffer;
    if (!in) fail(path, "read failed");
#endif
    return file;
}

MappedFile::~MappedFile() {
#if UNCLIP_HAVE_MMAP
    if (mapped_) ::munmap(const_cast<std::byte*>(data_), size_);
#else
    delete[] data_;
#endif
}

}  // namespace unclip::io
