// Crafted zip archives for the .ckpt tests, written with minizip (the library the reader uses
// too, but through its independent writer half).
#include <zip.h>

#include "checkpoint_helpers.hpp"

namespace unclip::test {

void write_zip(const std::filesystem::path& path, const std::vector<ZipItem>& items) {
    zipFile zip = zipOpen64(path.string().c_str(), APPEND_STATUS_CREATE);
    if (!zip) throw std::runtime_error("cannot create " + path.string());
    for (const auto& item : items) {
        const int method = item.compress ? Z_DEFLATED : 0;
        if (zipOpenNewFileInZip64(zip, item.name.c_str(), nullptr, nullptr, 0, nullptr, 0, nullptr, method,
                                  item.compress ? Z_DEFAULT_COMPRESSION : 0, 0) != ZIP_OK ||
            zipWriteInFileInZip(zip, item.bytes.data(), static_cast<unsigned>(item.bytes.size())) != ZIP_OK ||
            zipCloseFileInZip(zip) != ZIP_OK)
            throw std::runtime_error("cannot write zip entry " + item.name);
    }
    if (zipClose(zip, nullptr) != ZIP_OK) throw std::runtime_error("cannot finish " + path.string());
}

}  // namespace unclip::test
