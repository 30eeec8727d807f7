#pragma once
// Zip archives written byte by byte, for the archives no zip library would write: entries whose
// bytes overlap, duplicate names, sizes that lie. Stored (or claimed-deflated) entries only.
#include <cstdint>
#include <string>
#include <vector>

namespace unclip::test {

class RawZip {
public:
    // Appends a local header and `data`; returns the local header's offset. The central record
    // (added by central()) may claim other sizes and methods than what is written here.
    std::uint32_t local(const std::string& name, const std::string& data, std::uint16_t method = 0,
                        std::uint32_t claimed_size = kActual) {
        const auto offset = static_cast<std::uint32_t>(bytes_.size());
        const std::uint32_t crc = crc32(data);
        u32(0x04034b50u), u16(20), u16(0), u16(method), u16(0), u16(0x21), u32(crc);
        u32(static_cast<std::uint32_t>(data.size())), u32(claimed_size == kActual ? static_cast<std::uint32_t>(data.size()) : claimed_size);
        u16(static_cast<std::uint16_t>(name.size())), u16(0);
        bytes_ += name;
        bytes_ += data;
        return offset;
    }
    // A central directory record for `name` pointing at the local header at `offset`.
    void central(const std::string& name, std::uint32_t offset, const std::string& data, std::uint16_t method = 0,
                 std::uint32_t claimed_size = kActual) {
        records_.push_back({name, offset, crc32(data), static_cast<std::uint32_t>(data.size()),
                            claimed_size == kActual ? static_cast<std::uint32_t>(data.size()) : claimed_size, method});
    }
    // Both of the above: an ordinary entry.
    void add(const std::string& name, const std::string& data) { central(name, local(name, data), data); }
    std::uint32_t size() const noexcept { return static_cast<std::uint32_t>(bytes_.size()); }

    std::string finish() {
        const auto directory = static_cast<std::uint32_t>(bytes_.size());
        for (const auto& r : records_) {
            u32(0x02014b50u), u16(20), u16(20), u16(0), u16(r.method), u16(0), u16(0x21), u32(r.crc);
            u32(r.compressed), u32(r.uncompressed), u16(static_cast<std::uint16_t>(r.name.size()));
            u16(0), u16(0), u16(0), u16(0), u32(0), u32(r.offset);
            bytes_ += r.name;
        }
        const auto directory_size = static_cast<std::uint32_t>(bytes_.size()) - directory;
        u32(0x06054b50u), u16(0), u16(0), u16(static_cast<std::uint16_t>(records_.size()));
        u16(static_cast<std::uint16_t>(records_.size())), u32(directory_size), u32(directory), u16(0);
        return bytes_;
    }

    static constexpr std::uint32_t kActual = 0xfffffffeu;

private:
    struct Record {
        std::string name;
        std::uint32_t offset, crc, compressed, uncompressed;
        std::uint16_t method;
    };
    static std::uint32_t crc32(const std::string& data) {
        std::uint32_t crc = ~0u;
        for (const char c : data) {
            crc ^= static_cast<unsigned char>(c);
            for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
        return ~crc;
    }
    void u16(std::uint16_t v) {
        bytes_ += static_cast<char>(v & 0xff);
        bytes_ += static_cast<char>(v >> 8);
    }
    void u32(std::uint32_t v) {
        u16(static_cast<std::uint16_t>(v & 0xffff));
        u16(static_cast<std::uint16_t>(v >> 16));
    }
    std::string bytes_;
    std::vector<Record> records_;
};

}  // namespace unclip::test
