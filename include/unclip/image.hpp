#pragma once
// 8-bit images in host memory: decoding (PNG, JPEG, BMP and GIF through stb_image, compiled into
// the library only) and validation of caller-provided pixel buffers. Sizes are checked against
// ImageLimits before any pixel memory is allocated.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/error.hpp"

namespace unclip {

struct ImageLimits {
    int max_side = 8192;                           // pixels, width and height each
    std::int64_t max_pixels = 8192LL * 8192LL;     // width * height
};

// Interleaved 8-bit pixels, row-major [height, width, channels], rows tightly packed.
// channels: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
struct Image {
    int width = 0, height = 0, channels = 0;
    std::vector<std::uint8_t> pixels;
    std::uint8_t at(int x, int y, int c) const noexcept {
        return pixels[(static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) *
                          static_cast<std::size_t>(channels) +
                      static_cast<std::size_t>(c)];
    }
};

// Decodes an encoded image (the first frame of a GIF; 16-bit PNGs are reduced to 8 bits; EXIF
// orientation is not applied). Throws Error(Status::bad_image) when the data is not a decodable
// image or when its size exceeds `limits` (checked from the header, before decoding).
UNCLIP_CXX_API Image decode_image(const void* data, std::size_t size, const ImageLimits& limits = {});
// Reads and decodes a file. Throws Error(Status::io) naming the path when it cannot be read, and
// Error(Status::bad_image) naming it when decode_image would.
UNCLIP_CXX_API Image load_image(const std::filesystem::path& path, const ImageLimits& limits = {});
// Copies a caller's pixel buffer (rows `row_stride` bytes apart; 0 = tightly packed). Throws
// Error(Status::invalid_argument) for a null pointer, channels outside 1..4, a non-positive size
// or a stride shorter than a row, and Error(Status::bad_image) for a size beyond `limits`.
UNCLIP_CXX_API Image image_from_pixels(const std::uint8_t* pixels, int width, int height, int channels,
                                       std::size_t row_stride = 0, const ImageLimits& limits = {});
// Throws Error(Status::bad_image) "image is WxH, ..." when the size exceeds `limits`, and
// Error(Status::invalid_argument) when it is not positive.
UNCLIP_CXX_API void check_image_size(std::int64_t width, std::int64_t height, const ImageLimits& limits = {});
// Throws Error(Status::invalid_argument), the message starting with `who`, unless the image has a
// positive size, 1..4 channels and exactly width x height x channels bytes of pixels.
UNCLIP_CXX_API void check_image_pixels(const Image& image, const std::string& who);

// Keyword/text pairs stored as PNG tEXt chunks (keywords 1-79 Latin-1 characters, no NUL).
using PngText = std::vector<std::pair<std::string, std::string>>;
// PNG bytes of an image (1-4 channels). Throws Error(Status::invalid_argument) when the pixel buffer
// does not match the size or a keyword is invalid.
UNCLIP_CXX_API std::vector<std::uint8_t> encode_png(const Image& image, const PngText& text = {});
// Writes a PNG file. Throws Error(Status::io) naming the path when it cannot be written.
UNCLIP_CXX_API void save_png(const Image& image, const std::filesystem::path& path, const PngText& text = {});

}  // namespace unclip
