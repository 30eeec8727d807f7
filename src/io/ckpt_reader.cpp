#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>

#include <unzip.h>

#include "io/mapped_file.hpp"
#include "io/pickle.hpp"
#include "unclip/io/ckpt.hpp"

namespace unclip::io {

struct CkptFile::State {
    std::string path;
    std::shared_ptr<const MappedFile> file;
    std::vector<CkptEntry> entries;
    std::vector<std::uint64_t> byte_offsets;  // of each entry's first element in the file
    std::unordered_map<std::string, std::size_t> index;
};

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
    throw Error(Status::bad_model, "open '" + path + "': " + what);
}

// minizip reads through these callbacks straight from the mapping, so the archive is parsed
// without a second file handle and entry offsets are offsets into the same bytes the tensors view.
struct MemoryStream {
    const std::byte* data;
    std::uint64_t size;
    std::uint64_t pos = 0;
};
voidpf ZCALLBACK mem_open(voidpf opaque, const void*, int) {
    static_cast<MemoryStream*>(opaque)->pos = 0;
    return opaque;
}
uLong ZCALLBACK mem_read(voidpf, voidpf stream, void* buf, uLong size) {
    auto* s = static_cast<MemoryStream*>(stream);
    const std::uint64_t n = std::min<std::uint64_t>(size, s->pos < s->size ? s->size - s->pos : 0);
    if (n) std::memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return static_cast<uLong>(n);
}
uLong ZCALLBACK mem_write(voidpf, voidpf, const void*, uLong) { return 0; }
ZPOS64_T ZCALLBACK mem_tell(voidpf, voidpf stream) { return static_cast<MemoryStream*>(stream)->pos; }
long ZCALLBACK mem_seek(voidpf, voidpf stream, ZPOS64_T offset, int origin) {
    auto* s = static_cast<MemoryStream*>(stream);
    std::uint64_t base = 0;
    if (origin == ZLIB_FILEFUNC_SEEK_CUR) base = s->pos;
    else if (origin == ZLIB_FILEFUNC_SEEK_END) base = s->size;
    if (offset > s->size || base > s->size - offset) return -1;
    s->pos = base + offset;
    return 0;
}
int ZCALLBACK mem_close(voidpf, voidpf) { return 0; }
int ZCALLBACK mem_error(voidpf, voidpf) { return 0; }

struct ZipEntry {
    unz64_file_pos position{};  // of its directory record, to go back to it without a search
    std::uint64_t size = 0, compressed_size = 0;
    bool stored = true;
};

// Deflate never shrinks data more than about 1032:1; an entry claiming more is a zip bomb's header.
constexpr std::uint64_t kMaxDeflateRatio = 1032;

struct Storage {
    const char* dtype_name;
    std::size_t element_size;
    std::optional<DType> dtype;
};
std::optional<Storage> storage_dtype(const std::string& type) {
    static const std::pair<const char*, Storage> kTypes[] = {
        {"FloatStorage", {"F32", 4, DType::f32}},    {"HalfStorage", {"F16", 2, DType::f16}},
        {"BFloat16Storage", {"BF16", 2, DType::bf16}}, {"DoubleStorage", {"F64", 8, std::nullopt}},
        {"LongStorage", {"I64", 8, std::nullopt}},   {"IntStorage", {"I32", 4, std::nullopt}},
        {"ShortStorage", {"I16", 2, std::nullopt}},  {"CharStorage", {"I8", 1, std::nullopt}},
        {"ByteStorage", {"U8", 1, std::nullopt}},    {"BoolStorage", {"BOOL", 1, std::nullopt}}};
    for (const auto& [name, storage] : kTypes)
        if (type == name) return storage;
    return std::nullopt;
}

// minizip accepts an end-of-central-directory record cut short when the zip64 record before it
// is whole; a file that lost even those last bytes is truncated, so it is refused here.
void check_end_record(const std::string& path, const MappedFile& file) {
    const std::size_t size = file.size(), fixed = 22, max_comment = 0xffff;
    const auto* d = reinterpret_cast<const unsigned char*>(file.data());
    const std::size_t lowest = size > fixed + max_comment ? size - fixed - max_comment : 0;
    for (std::size_t at = size >= 4 ? size - 4 : 0; size >= 4 && at + 1 > lowest; --at) {
        if (d[at] == 'P' && d[at + 1] == 'K' && d[at + 2] == 5 && d[at + 3] == 6) {
            if (at + fixed > size) bad(path, "truncated: the zip end record is cut short");
            const std::size_t comment = d[at + 20] | (std::size_t{d[at + 21]} << 8);
            if (at + fixed + comment != size) bad(path, "truncated or padded: the zip end record does not end the file");
            return;
        }
        if (at == 0) break;
    }
    bad(path, "not a zip archive, or truncated (no end-of-central-directory record)");
}

class Archive {
public:
    Archive(const std::string& path, const MappedFile& file) : path_(path), stream_{file.data(), file.size()} {
        zlib_filefunc64_def io{};
        io.zopen64_file = mem_open;
        io.zread_file = mem_read;
        io.zwrite_file = mem_write;
        io.ztell64_file = mem_tell;
        io.zseek64_file = mem_seek;
        io.zclose_file = mem_close;
        io.zerror_file = mem_error;
        io.opaque = &stream_;
        check_end_record(path, file);
        // Owned from here: a constructor that throws runs no destructor (fuzzing found the leak).
        zip_.reset(unzOpen2_64(path.c_str(), &io));
        if (!zip_) bad(path, "not a zip archive, or truncated (no readable central directory)");
        for (int rc = unzGoToFirstFile(zip()); rc == UNZ_OK; rc = unzGoToNextFile(zip())) {
            unz_file_info64 info{};
            char name[1024];
            if (unzGetCurrentFileInfo64(zip(), &info, name, sizeof name, nullptr, 0, nullptr, 0) != UNZ_OK)
                bad(path, "unreadable zip directory entry");
            ZipEntry e;
            if (unzGetFilePos64(zip(), &e.position) != UNZ_OK) bad(path, "unreadable zip directory entry");
            e.size = info.uncompressed_size;
            e.compressed_size = info.compressed_size;
            e.stored = info.compression_method == 0 && info.compressed_size == info.uncompressed_size;
            // Two entries of one name would let two readers of the archive see different files.
            if (!entries_.emplace(name, e).second) bad(path, "zip entry '" + std::string(name) + "' appears twice");
            names_.emplace_back(name);
        }
    }
    Archive(const Archive&) = delete;
    Archive& operator=(const Archive&) = delete;

    const std::vector<std::string>& names() const noexcept { return names_; }
    const ZipEntry* find(const std::string& name) const {
        const auto it = entries_.find(name);
        return it == entries_.end() ? nullptr : &it->second;
    }

    // Where the entry's bytes start. minizip (Debian's 1.1, zlib 1.2.13) finds and walks the
    // directory, including zip64, but refuses to open entries whose local header lies past 4 GiB
    // in PyTorch's archives (UNZ_BADZIPFILE for every storage after the first 4 GiB of an 8 GB
    // fp32 sd21-unclip-h-sized file, measured), and it does not report the local header's
    // offset. So the two fixed-layout records are read here: the entry's central record, at the
    // position minizip reports, for the (zip64) local header offset, and the local header for the
    // lengths that precede the data. Both are bounds-checked against the file.
    std::uint64_t data_offset(const std::string& name) {
        const ZipEntry* e = find(name);
        if (!e) bad(path_, "zip entry '" + name + "' not found");
        const auto* d = reinterpret_cast<const unsigned char*>(stream_.data);
        const std::uint64_t size = stream_.size;
        const auto u16 = [&](std::uint64_t at) { return std::uint64_t{d[at]} | std::uint64_t{d[at + 1]} << 8; };
        const auto u32 = [&](std::uint64_t at) { return u16(at) | u16(at + 2) << 16; };
        const auto u64 = [&](std::uint64_t at) { return u32(at) | u32(at + 4) << 32; };
        const auto damaged = [&](const char* what) { bad(path_, "zip entry '" + name + "': " + what); };

        const std::uint64_t central = e->position.pos_in_zip_directory;
        if (central > size || size - central < 46 || u32(central) != 0x02014b50u) damaged("central directory record is damaged");
        const std::uint64_t name_len = u16(central + 28), extra_len = u16(central + 30);
        if (size - central - 46 < name_len + extra_len) damaged("central directory record is damaged");
        std::uint64_t local = u32(central + 42);
        if (local == 0xffffffffu) {  // the zip64 extra field holds it, after any 64-bit sizes
            bool found = false;
            for (std::uint64_t at = central + 46 + name_len, end = at + extra_len; at + 4 <= end;) {
                const std::uint64_t id = u16(at), len = u16(at + 2);
                if (at + 4 + len > end) break;
                if (id == 1) {
                    std::uint64_t field = at + 4;
                    if (u32(central + 24) == 0xffffffffu) field += 8;
                    if (u32(central + 20) == 0xffffffffu) field += 8;
                    if (field + 8 <= at + 4 + len) {
                        local = u64(field);
                        found = true;
                    }
                    break;
                }
                at += 4 + len;
            }
            if (!found) damaged("zip64 local header offset missing");
        }
        if (local > size || size - local < 30 || u32(local) != 0x04034b50u) damaged("local header is damaged");
        const std::uint64_t local_name = u16(local + 26), local_extra = u16(local + 28);
        if (size - local - 30 < local_name) damaged("local header is damaged");
        if (local_name != name_len || std::memcmp(d + local + 30, d + central + 46, name_len) != 0)
            damaged("local header names another file");
        if (u16(local + 8) != 0) damaged("local header says compressed");
        return local + 30 + local_name + local_extra;
    }

    // The whole entry, decompressed if need be (only data.pkl is read this way).
    std::string read(const std::string& name, std::uint64_t limit) {
        const ZipEntry* e = find(name);
        if (!e) bad(path_, "zip entry '" + name + "' not found");
        if (e->size > limit) bad(path_, "zip entry '" + name + "' is " + std::to_string(e->size) + " bytes, over the limit");
        if (e->stored) {  // straight from the mapping, wherever it lies (see data_offset)
            const std::uint64_t offset = data_offset(name);
            if (offset > stream_.size || e->size > stream_.size - offset)
                bad(path_, "zip entry '" + name + "' lies outside the file: truncated");
            return std::string(reinterpret_cast<const char*>(stream_.data) + offset, static_cast<std::size_t>(e->size));
        }
        if (e->compressed_size > stream_.size || e->size / kMaxDeflateRatio > e->compressed_size)
            bad(path_, "zip entry '" + name + "' claims " + std::to_string(e->size) + " bytes from " +
                           std::to_string(e->compressed_size) + " compressed: not a deflate stream (zip bomb?)");
        unz64_file_pos position = e->position;
        if (unzGoToFilePos64(zip(), &position) != UNZ_OK || unzOpenCurrentFile(zip()) != UNZ_OK)
            bad(path_, "zip entry '" + name + "' cannot be opened");
        // Inflated in pieces, so memory follows the bytes that really come out, not the claim.
        std::string out;
        char piece[1 << 16];
        int got = 0;
        while ((got = unzReadCurrentFile(zip(), piece, sizeof piece)) > 0) {
            if (out.size() + static_cast<std::size_t>(got) > e->size) break;
            out.append(piece, static_cast<std::size_t>(got));
        }
        const int close = unzCloseCurrentFile(zip());  // checks the CRC once everything was read
        if (got != 0 || out.size() != e->size || close != UNZ_OK)
            bad(path_, "zip entry '" + name + "' is truncated, longer than its size or fails its CRC check");
        return out;
    }

private:
    struct ZipClose {
        void operator()(void* zip) const noexcept { unzClose(zip); }
    };
    unzFile zip() const noexcept { return zip_.get(); }

    std::string path_;
    MemoryStream stream_;
    std::unique_ptr<void, ZipClose> zip_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, ZipEntry> entries_;
};

using pickle::Value;
using Kind = Value::Kind;

// The state dict inside the saved object: Lightning checkpoints nest it under "state_dict";
// torch.save(model.state_dict()) saves it directly.
const Value& state_dict(const Value& root, const std::string& path) {
    if (root.kind != Kind::dict) bad(path, "data.pkl does not hold a dict");
    for (const auto& [key, value] : root.entries)
        if (key->kind == Kind::string && key->text == "state_dict") {
            if (value->kind != Kind::dict) bad(path, "'state_dict' is not a dict");
            return *value;
        }
    return root;
}

std::string element_range_error(const pickle::TensorRef& t, std::int64_t numel, std::size_t element_size) {
    // A view may repeat elements (stride 0), so its own size is bounded only by what a tensor can
    // address: its element and byte counts must fit 64 bits before anything is allocated for it.
    std::int64_t count = 1, bytes = 0;
    for (const std::int64_t d : t.size)
        if (d >= 0 && __builtin_mul_overflow(count, d, &count)) return "shape overflows 64 bits";
    if (count >= 0 && __builtin_mul_overflow(count, static_cast<std::int64_t>(element_size), &bytes))
        return "byte size overflows 64 bits";
    if (t.size.empty()) return t.offset < numel ? "" : "offset past the end of its storage";
    std::int64_t last = t.offset;
    for (std::size_t i = 0; i < t.size.size(); ++i) {
        if (t.size[i] < 0 || t.stride[i] < 0) return "negative size or stride";
        if (t.size[i] == 0) return "";
        std::int64_t step = 0;
        if (__builtin_mul_overflow(t.size[i] - 1, t.stride[i], &step) || __builtin_add_overflow(last, step, &last))
            return "size x stride overflows";
    }
    return last < numel ? "" : "elements reach past the end of its storage (" + std::to_string(numel) + " elements)";
}

}  // namespace

CkptFile CkptFile::open(const std::string& path) {
    auto state = std::make_shared<State>();
    state->path = path;
    state->file = MappedFile::open(path);
    Archive zip(path, *state->file);

    std::string pkl;
    for (const auto& name : zip.names()) {
        const auto slash = name.find('/');
        if (slash != std::string::npos && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
            if (!pkl.empty()) bad(path, "more than one data.pkl in the archive");
            pkl = name;
        }
    }
    if (pkl.empty()) bad(path, "no <root>/data.pkl in the archive: not a PyTorch zip checkpoint");
    const std::string root = pkl.substr(0, pkl.size() - 8);
    if (const ZipEntry* order = zip.find(root + "byteorder")) {
        (void)order;
        if (zip.read(root + "byteorder", 16) != "little") bad(path, "storages are big-endian");
    }
    const pickle::ValuePtr saved = pickle::load(zip.read(pkl, kMaxPickleBytes), path);
    const Value& dict = state_dict(*saved, path);

    std::unordered_map<std::string, std::uint64_t> storage_offsets;
    for (const auto& [key, value] : dict.entries) {
        if (value->kind != Kind::tensor) continue;
        if (key->kind != Kind::string) bad(path, "a tensor has a key that is not a string");
        const auto& t = *value->tensor;
        const auto& s = *t.storage;
        const std::string& name = key->text;
        const auto storage = storage_dtype(s.type);
        if (!storage) bad(path, "tensor '" + name + "': unknown storage type '" + s.type + "'");

        const std::string entry_name = root + "data/" + s.key;
        const ZipEntry* entry = zip.find(entry_name);
        if (!entry) bad(path, "tensor '" + name + "': storage entry '" + entry_name + "' is missing");
        if (!entry->stored)
            bad(path, "tensor '" + name + "': storage entry '" + entry_name +
                          "' is compressed; tensor data must be stored uncompressed to be mapped");
        std::uint64_t bytes = 0;
        if (__builtin_mul_overflow(static_cast<std::uint64_t>(s.numel), storage->element_size, &bytes))
            bad(path, "tensor '" + name + "': storage '" + s.key + "' of " + std::to_string(s.numel) +
                          " elements: its byte size overflows 64 bits");
        if (bytes != entry->size)
            bad(path, "tensor '" + name + "': storage '" + s.key + "' holds " + std::to_string(entry->size) +
                          " bytes, its " + std::to_string(s.numel) + " elements need " + std::to_string(bytes));
        auto found = storage_offsets.find(s.key);
        if (found == storage_offsets.end()) {
            const std::uint64_t offset = zip.data_offset(entry_name);
            if (offset > state->file->size() || entry->size > state->file->size() - offset)
                bad(path, "tensor '" + name + "': storage entry '" + entry_name + "' lies outside the file (" +
                              std::to_string(state->file->size()) + " bytes)");
            found = storage_offsets.emplace(s.key, offset).first;
        }
        const std::string range = element_range_error(t, s.numel, storage->element_size);
        if (!range.empty()) bad(path, "tensor '" + name + "': " + range);
        if (state->index.count(name)) bad(path, "tensor '" + name + "' appears twice");

        CkptEntry e{name, storage->dtype_name, storage->dtype, t.size, t.stride};
        state->index.emplace(name, state->entries.size());
        state->entries.push_back(std::move(e));
        state->byte_offsets.push_back(found->second + static_cast<std::uint64_t>(t.offset) * storage->element_size);
    }
    // Storages may be shared by tensors, but two zip entries never share bytes: an archive whose
    // entries overlap (one entry's data inside another's) is crafted, whatever it means.
    std::vector<std::pair<std::uint64_t, std::string>> starts;
    for (const auto& [key, offset] : storage_offsets) starts.emplace_back(offset, root + "data/" + key);
    if (const ZipEntry* p = zip.find(pkl); p && p->stored) starts.emplace_back(zip.data_offset(pkl), pkl);
    std::sort(starts.begin(), starts.end());
    for (std::size_t i = 1; i < starts.size(); ++i) {
        const std::uint64_t previous_end = starts[i - 1].first + zip.find(starts[i - 1].second)->size;
        if (starts[i].first < previous_end && zip.find(starts[i].second)->size > 0)
            bad(path, "zip entries '" + starts[i - 1].second + "' and '" + starts[i].second + "' overlap");
    }
    return CkptFile(std::move(state));
}

const std::string& CkptFile::path() const noexcept { return state_->path; }
const std::vector<CkptEntry>& CkptFile::entries() const noexcept { return state_->entries; }

const CkptEntry* CkptFile::find(std::string_view name) const noexcept {
    const auto it = state_->index.find(std::string(name));
    return it == state_->index.end() ? nullptr : &state_->entries[it->second];
}

Tensor CkptFile::get(std::string_view name) const {
    const auto it = state_->index.find(std::string(name));
    if (it == state_->index.end()) bad(state_->path, "tensor '" + std::string(name) + "': not in the file");
    const CkptEntry& e = state_->entries[it->second];
    if (!e.dtype)
        bad(state_->path, "tensor '" + e.name + "': dtype " + e.dtype_name + " not supported (F32, F16 and BF16 are)");
    if (e.dims.size() > static_cast<std::size_t>(kMaxRank))
        bad(state_->path, "tensor '" + e.name + "': " + std::to_string(e.dims.size()) + " dimensions, at most " +
                              std::to_string(kMaxRank) + " are supported");
    const Shape shape = Shape::from_range(e.dims.begin(), e.dims.end());
    Strides strides{};
    std::copy(e.strides.begin(), e.strides.end(), strides.begin());
    auto* data = const_cast<std::byte*>(state_->file->data() + state_->byte_offsets[it->second]);
    Tensor view = Tensor::borrow(data, *e.dtype, shape, strides, state_);
    if (reinterpret_cast<std::uintptr_t>(data) % dtype_size(*e.dtype) != 0) return view.clone();
    return view;
}

}  // namespace unclip::io
