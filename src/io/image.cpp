// Image decoding. stb_image is compiled here and only here, static, with its own dimension cap as
// a second line of defence behind the header check against ImageLimits.
#include "unclip/image.hpp"

#include <cstdio>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
// The formats photos come in; the rarer ones (PSD, TGA, HDR, PIC, PNM) only add decoder surface.
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_MAX_DIMENSIONS 65536
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace unclip {
namespace {
struct StbFree {
    void operator()(stbi_uc* p) const noexcept { stbi_image_free(p); }
};

// Where the data after a JPEG's SOI marker starts, or 0 when the data is not a JPEG for stb. stb
// reads a marker after any run of 0xFF fill bytes, so "FF FF FF D8" opens a JPEG as well as "FF D8"
// (found by fuzzing: such a file bypassed the Huffman-table check below).
std::size_t jpeg_body(const unsigned char* p, std::size_t n) {
    if (n < 2 || p[0] != 0xFF) return 0;
    std::size_t i = 1;
    while (i < n && p[i] == 0xFF) ++i;
    return i < n && p[i] == 0xD8 ? i + 1 : 0;
}

// stb_image 2.27 (Debian's libstb) writes past its Huffman tables when a DHT segment declares
// more than 256 codes (fixed upstream in 2.28); such files are refused here before stb sees them.
// Up to the first scan the walk follows stb's marker parsing (resynchronising on stray bytes as
// stb does; DHT and DQT advance by their tables, which may run past the declared length). From
// the first SOS to the EOI marker, where stb's position depends on the entropy decoder, every
// 0xFF 0xC4 is checked as a DHT segment: in a valid file such a pair only occurs as a real marker.
// Data after EOI (motion-photo videos) is not scanned, so it cannot cause false refusals.
// Which Huffman tables DHT segments have defined so far. stb 2.27 leaves undefined tables
// uninitialised and its decoder then reads past maxcode[18] (found by fuzzing), so a scan that
// decodes with a table no DHT defined is refused as well.
struct HuffmanTables {
    bool dc[4] = {}, ac[4] = {};
    bool progressive = false;
};

void check_dht_at(const unsigned char* p, std::size_t n, std::size_t length_at, std::size_t& next,
                  HuffmanTables& tables) {
    auto byte = [&](std::size_t at) -> std::size_t { return at < n ? p[at] : 0; };
    const auto length = static_cast<std::ptrdiff_t>((byte(length_at) << 8) | byte(length_at + 1));
    std::size_t t = length_at + 2;
    for (std::ptrdiff_t left = length - 2; left > 0 && t < n;) {
        if ((byte(t) >> 4) > 1 || (byte(t) & 15) > 3) break;  // stb stops: "bad DHT header"
        std::size_t codes = 0;
        for (std::size_t k = 0; k < 16; ++k) codes += byte(t + 1 + k);
        if (codes > 256)
            throw Error(Status::bad_image, "JPEG Huffman table declares " + std::to_string(codes) + " codes (at most 256)");
        ((byte(t) >> 4) ? tables.ac : tables.dc)[byte(t) & 15] = true;
        t += 17 + codes;
        left -= static_cast<std::ptrdiff_t>(17 + codes);
    }
    next = t;
}

// An SOS segment (its length at `length_at`): the tables stb decodes this scan with must exist.
// Baseline scans use both; progressive DC first passes only the DC table, AC scans only the AC one.
void check_scan_at(const unsigned char* p, std::size_t n, std::size_t length_at, const HuffmanTables& tables) {
    auto byte = [&](std::size_t at) -> std::size_t { return at < n ? p[at] : 0; };
    const std::size_t components = byte(length_at + 2);
    if (components < 1 || components > 4) return;  // stb: "bad SOS component count"
    const std::size_t after = length_at + 3 + 2 * components;
    const std::size_t spectral_start = byte(after), approximation_high = byte(after + 2) >> 4;
    for (std::size_t c = 0; c < components; ++c) {
        const std::size_t selectors = byte(length_at + 4 + 2 * c), dc = selectors >> 4, ac = selectors & 15;
        if (dc > 3 || ac > 3) return;  // stb: "bad DC huff" / "bad AC huff"
        const bool uses_dc = !tables.progressive || (spectral_start == 0 && approximation_high == 0);
        const bool uses_ac = !tables.progressive || spectral_start > 0;
        if ((uses_dc && !tables.dc[dc]) || (uses_ac && !tables.ac[ac]))
            throw Error(Status::bad_image, std::string("JPEG scan decodes with Huffman table ") +
                                               (uses_dc && !tables.dc[dc] ? "DC " + std::to_string(dc)
                                                                          : "AC " + std::to_string(ac)) +
                                               ", which no DHT segment defined");
    }
}

void check_jpeg_huffman_tables(const unsigned char* p, std::size_t n, std::size_t body) {
    auto byte = [&](std::size_t at) -> std::size_t { return at < n ? p[at] : 0; };
    HuffmanTables tables;
    std::size_t i = body;  // after SOI
    while (i < n) {
        while (i < n && p[i] != 0xFF) ++i;  // stb skips padding between segments
        while (i < n && p[i] == 0xFF) ++i;
        if (i >= n) return;
        const unsigned char marker = p[i++];
        const std::size_t length = (byte(i) << 8) | byte(i + 1);
        if (marker == 0xD9) return;  // EOI
        if (marker == 0xC4) {
            check_dht_at(p, n, i, i, tables);
        } else if (marker == 0xDB) {
            std::size_t t = i + 2;
            for (auto left = static_cast<std::ptrdiff_t>(length) - 2; left > 0 && t < n;) {
                if ((byte(t) >> 4) > 1 || (byte(t) & 15) > 3) return;  // stb: "bad DQT type/table"
                const std::size_t step = (byte(t) >> 4) ? 129 : 65;
                t += step;
                left -= static_cast<std::ptrdiff_t>(step);
            }
            i = t;
        } else if (marker == 0xDA) {
            check_scan_at(p, n, i, tables);
            for (std::size_t q = i; q + 1 < n; ++q) {
                if (p[q] != 0xFF) continue;
                if (p[q + 1] == 0xD9) return;
                if (p[q + 1] == 0xC4) {
                    std::size_t unused = 0;
                    check_dht_at(p, n, q + 2, unused, tables);
                } else if (p[q + 1] == 0xDA) {
                    check_scan_at(p, n, q + 2, tables);
                }
            }
            return;
        } else if (marker == 0xDD || (marker >= 0xC0 && marker <= 0xCF) || (marker >= 0xE0 && marker <= 0xEF) ||
                   marker == 0xFE) {
            if (marker == 0xC2) tables.progressive = true;
            i += length;  // DRI, SOFn, APPn, COM: stb reads exactly the declared length
        } else {
            return;  // stb: "unknown marker"
        }
    }
}

// The size a PNG or JPEG header claims, read before stb sees the data: stb refuses sizes past its
// own caps with only "unknown image type", so these are checked against ImageLimits first, and the
// error says how large the image claims to be. {0, 0} when there is no such header.
std::pair<std::int64_t, std::int64_t> claimed_size(const unsigned char* p, std::size_t n, std::size_t jpeg) {
    auto be16 = [&](std::size_t at) -> std::int64_t { return at + 1 < n ? (std::int64_t{p[at]} << 8) | p[at + 1] : 0; };
    if (n >= 24 && std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(p + 12, "IHDR", 4) == 0)
        return {(be16(16) << 16) | be16(18), (be16(20) << 16) | be16(22)};
    for (std::size_t i = jpeg; jpeg && i + 1 < n;) {  // markers up to the first frame header
        while (i < n && p[i] != 0xFF) ++i;
        while (i < n && p[i] == 0xFF) ++i;
        if (i >= n) break;
        const unsigned char marker = p[i++];
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC)
            return {be16(i + 5), be16(i + 3)};  // SOFn: length, precision, height, width
        if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;  // no length
        if (marker == 0xDA || marker == 0xD9) break;
        i += static_cast<std::size_t>(be16(i));
    }
    return {0, 0};
}
}  // namespace

void check_image_size(std::int64_t width, std::int64_t height, const ImageLimits& limits) {
    const std::string dims = std::to_string(width) + "x" + std::to_string(height);
    if (width <= 0 || height <= 0) throw Error(Status::invalid_argument, "image is " + dims + ": sides must be positive");
    if (width > limits.max_side || height > limits.max_side)
        throw Error(Status::bad_image, "image is " + dims + ", larger than the limit of " +
                                           std::to_string(limits.max_side) + " pixels per side");
    if (width * height > limits.max_pixels)
        throw Error(Status::bad_image, "image is " + dims + ", more than the limit of " +
                                           std::to_string(limits.max_pixels) + " pixels");
}

Image decode_image(const void* data, std::size_t size, const ImageLimits& limits) {
    if (!data || size == 0) throw Error(Status::bad_image, "image data is empty");
    if (size > static_cast<std::size_t>(std::numeric_limits<int>::max()))
        throw Error(Status::bad_image, "image data is larger than 2 GiB");
    const auto* bytes = static_cast<const stbi_uc*>(data);
    const int len = static_cast<int>(size);
    const std::size_t body = jpeg_body(bytes, size);
    if (const auto [claimed_width, claimed_height] = claimed_size(bytes, size, body); claimed_width > 0 && claimed_height > 0)
        check_image_size(claimed_width, claimed_height, limits);
    if (body) check_jpeg_huffman_tables(bytes, size, body);
    int width = 0, height = 0, channels = 0;
    if (!stbi_info_from_memory(bytes, len, &width, &height, &channels))
        throw Error(Status::bad_image, std::string("image data is not a decodable image (") + stbi_failure_reason() + ")");
    check_image_size(width, height, limits);
    std::unique_ptr<stbi_uc, StbFree> pixels(stbi_load_from_memory(bytes, len, &width, &height, &channels, 0));
    if (!pixels) throw Error(Status::bad_image, std::string("image could not be decoded (") + stbi_failure_reason() + ")");
    check_image_size(width, height, limits);
    Image image;
    image.width = width;
    image.height = height;
    image.channels = channels;
    const std::size_t n = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * static_cast<std::size_t>(channels);
    image.pixels.assign(pixels.get(), pixels.get() + n);
    return image;
}

Image load_image(const std::filesystem::path& path, const ImageLimits& limits) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Status::io, "open '" + path.string() + "': cannot read the file");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error(Status::io, "read '" + path.string() + "': read error");
    try {
        return decode_image(bytes.data(), bytes.size(), limits);
    } catch (const Error& e) {
        throw Error(e.status(), "'" + path.string() + "': " + e.what());
    }
}

Image image_from_pixels(const std::uint8_t* pixels, int width, int height, int channels, std::size_t row_stride,
                        const ImageLimits& limits) {
    if (!pixels) throw Error(Status::invalid_argument, "image_from_pixels: pixels is null");
    if (channels < 1 || channels > 4)
        throw Error(Status::invalid_argument, "image_from_pixels: channels must be 1..4, got " + std::to_string(channels));
    check_image_size(width, height, limits);
    const std::size_t row = static_cast<std::size_t>(width) * static_cast<std::size_t>(channels);
    if (row_stride == 0) row_stride = row;
    if (row_stride < row)
        throw Error(Status::invalid_argument, "image_from_pixels: row_stride " + std::to_string(row_stride) +
                                                  " is shorter than a row of " + std::to_string(row) + " bytes");
    Image image;
    image.width = width;
    image.height = height;
    image.channels = channels;
    image.pixels.resize(row * static_cast<std::size_t>(height));
    for (int y = 0; y < height; ++y)
        std::memcpy(image.pixels.data() + static_cast<std::size_t>(y) * row, pixels + static_cast<std::size_t>(y) * row_stride, row);
    return image;
}

namespace {
std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) {
        crc ^= data[i];
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

void append_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

// A tEXt chunk: length, type, keyword NUL text, CRC over type and data.
std::vector<std::uint8_t> text_chunk(const std::string& keyword, const std::string& text) {
    if (keyword.empty() || keyword.size() > 79 || keyword.find('\0') != std::string::npos)
        throw Error(Status::invalid_argument, "encode_png: tEXt keyword '" + keyword + "' must be 1-79 characters without NUL");
    std::vector<std::uint8_t> body{'t', 'E', 'X', 't'};
    body.insert(body.end(), keyword.begin(), keyword.end());
    body.push_back(0);
    body.insert(body.end(), text.begin(), text.end());
    std::vector<std::uint8_t> chunk;
    append_be32(chunk, static_cast<std::uint32_t>(body.size() - 4));
    chunk.insert(chunk.end(), body.begin(), body.end());
    append_be32(chunk, crc32(body.data(), body.size()));
    return chunk;
}
}  // namespace

void check_image_pixels(const Image& image, const std::string& who) {
    const auto geometry = [&] {
        return std::to_string(image.width) + "x" + std::to_string(image.height) + "x" + std::to_string(image.channels) +
               " with " + std::to_string(image.pixels.size()) + " bytes of pixels";
    };
    if (image.width <= 0 || image.height <= 0 || image.pixels.empty())
        throw Error(Status::invalid_argument, who + ": image is empty (" + geometry() + ")");
    if (image.channels < 1 || image.channels > 4 ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) *
                                   static_cast<std::size_t>(image.channels))
        throw Error(Status::invalid_argument, who + ": image " + geometry() +
                                                  " (1-4 channels, width x height x channels bytes)");
}

std::vector<std::uint8_t> encode_png(const Image& image, const PngText& text) {
    check_image_pixels(image, "encode_png");
    std::vector<std::uint8_t> png;
    auto append = [](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<std::uint8_t>*>(context);
        const auto* bytes = static_cast<const std::uint8_t*>(data);
        out->insert(out->end(), bytes, bytes + size);
    };
    if (!stbi_write_png_to_func(append, &png, image.width, image.height, image.channels, image.pixels.data(),
                                image.width * image.channels))
        throw Error(Status::internal, "encode_png: stb_image_write failed");
    // The 8-byte signature and the 25-byte IHDR chunk come first; text chunks follow IHDR.
    std::size_t at = 8 + 25;
    for (const auto& [keyword, value] : text) {
        const auto chunk = text_chunk(keyword, value);
        png.insert(png.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
        at += chunk.size();
    }
    return png;
}

void save_png(const Image& image, const std::filesystem::path& path, const PngText& text) {
    const std::vector<std::uint8_t> png = encode_png(image, text);
    std::FILE* file = std::fopen(path.string().c_str(), "wb");
    if (!file) throw Error(Status::io, "write '" + path.string() + "': " + std::strerror(errno));
    const bool written = std::fwrite(png.data(), 1, png.size(), file) == png.size();
    const bool closed = std::fclose(file) == 0;
    if (!written || !closed) throw Error(Status::io, "write '" + path.string() + "': " + std::strerror(errno));
}

}  // namespace unclip
