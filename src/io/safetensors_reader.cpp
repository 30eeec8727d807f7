#include <algorithm>
#include <cstring>
#include <set>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/mapped_file.hpp"
#include "unclip/io/safetensors.hpp"

namespace unclip::io {

struct SafetensorsFile::State {
    std::string path;
    std::shared_ptr<const void> keep_alive;
    const std::byte* data_section = nullptr;
    std::uint64_t data_size = 0;
    std::vector<SafetensorsEntry> entries;
    std::unordered_map<std::string, std::size_t> index;
    std::map<std::string, std::string> metadata;
};

namespace {

using Json = nlohmann::json;

[[noreturn]] void bad(const std::string& label, const std::string& what) {
    throw Error(Status::bad_model, "open '" + label + "': " + what);
}
[[noreturn]] void bad_tensor(const std::string& label, const std::string& name, const std::string& what) {
    bad(label, "tensor '" + name + "': " + what);
}

// Every dtype the safetensors format defines, with its element size; only the first three are
// computed with, the others are listed so that their tensors can be skipped by name.
struct KnownDType {
    const char* name;
    std::size_t size;
    std::optional<DType> dtype;
};
constexpr KnownDType kKnownDTypes[] = {
    {"F32", 4, DType::f32},      {"F16", 2, DType::f16},      {"BF16", 2, DType::bf16},
    {"F64", 8, std::nullopt},    {"I64", 8, std::nullopt},    {"U64", 8, std::nullopt},
    {"I32", 4, std::nullopt},    {"U32", 4, std::nullopt},    {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt},    {"I8", 1, std::nullopt},     {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},   {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const KnownDType* lookup_dtype(const std::string& name) {
    for (const auto& known : kKnownDTypes)
        if (name == known.name) return &known;
    return nullptr;
}

// nlohmann::json keeps the last of duplicate keys silently; a parse callback sees every key.
Json parse_header(const std::string& label, const char* text, std::size_t size) {
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    auto watch = [&](int, Json::parse_event_t event, Json& parsed) {
        if (event == Json::parse_event_t::object_start) open_objects.emplace_back();
        else if (event == Json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
        else if (event == Json::parse_event_t::key && !open_objects.empty() &&
                 !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    Json header;
    try {
        header = Json::parse(text, text + size, watch);
    } catch (const Json::exception& e) {
        bad(label, std::string("header is not valid JSON: ") + e.what());
    }
    if (!duplicate.empty()) bad(label, "header names '" + duplicate + "' twice");
    if (!header.is_object()) bad(label, "header is not a JSON object");
    return header;
}

std::uint64_t read_unsigned(const std::string& label, const std::string& name, const Json& value, const char* what) {
    if (!value.is_number_unsigned()) bad_tensor(label, name, std::string(what) + " must be a non-negative integer");
    return value.get<std::uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& label, const std::string& name, const Json& info,
                             std::uint64_t data_size) {
    if (name.empty()) bad(label, "a tensor has an empty name");
    if (!info.is_object()) bad_tensor(label, name, "entry is not a JSON object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
        if (!info.contains(field)) bad_tensor(label, name, std::string("entry has no '") + field + "'");
    for (auto it = info.begin(); it != info.end(); ++it)
        if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
            bad_tensor(label, name, "unexpected field '" + it.key() + "'");

    SafetensorsEntry entry;
    entry.name = name;
    if (!info["dtype"].is_string()) bad_tensor(label, name, "dtype is not a string");
    entry.dtype_name = info["dtype"].get<std::string>();
    const KnownDType* known = lookup_dtype(entry.dtype_name);
    if (!known) bad_tensor(label, name, "unknown dtype '" + entry.dtype_name + "'");
    entry.dtype = known->dtype;

    const Json& shape = info["shape"];
    if (!shape.is_array()) bad_tensor(label, name, "shape is not an array");
    std::uint64_t bytes = known->size;
    for (const Json& dim : shape) {
        const std::uint64_t d = read_unsigned(label, name, dim, "every shape entry");
        if (d > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(bytes, d, &bytes))
            bad_tensor(label, name, "shape " + shape.dump() + " overflows 64 bits");
        entry.dims.push_back(static_cast<std::int64_t>(d));
    }

    const Json& offsets = info["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) bad_tensor(label, name, "data_offsets is not [begin, end]");
    entry.begin = read_unsigned(label, name, offsets[0], "data_offsets[0]");
    entry.end = read_unsigned(label, name, offsets[1], "data_offsets[1]");
    if (entry.end < entry.begin) bad_tensor(label, name, "data_offsets " + offsets.dump() + " are reversed");
    if (entry.end > data_size)
        bad_tensor(label, name, "data_offsets " + offsets.dump() + " end past the data section (" +
                                    std::to_string(data_size) + " bytes)");
    if (entry.end - entry.begin != bytes)
        bad_tensor(label, name, "shape " + shape.dump() + " of " + entry.dtype_name + " needs " + std::to_string(bytes) +
                                    " bytes but data_offsets " + offsets.dump() + " span " +
                                    std::to_string(entry.end - entry.begin));
    return entry;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    auto file = MappedFile::open(path);
    return from_memory(file->data(), file->size(), path, file);
}

SafetensorsFile SafetensorsFile::from_memory(const void* data, std::size_t size, std::string label,
                                             std::shared_ptr<const void> keep_alive) {
    auto state = std::make_shared<State>();
    state->path = std::move(label);
    state->keep_alive = std::move(keep_alive);
    const std::string& name = state->path;
    const auto* bytes = static_cast<const std::byte*>(data);

    if (size < 8) bad(name, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header size");
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    if (header_size > kMaxSafetensorsHeaderBytes)
        bad(name, "header size " + std::to_string(header_size) + " exceeds the limit of " +
                      std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
    if (header_size > size - 8)
        bad(name, "header size " + std::to_string(header_size) + " runs past the end of the file (" +
                      std::to_string(size) + " bytes): truncated or not a safetensors file");
    if (header_size < 2) bad(name, "header is empty");

    state->data_section = bytes + 8 + header_size;
    state->data_size = size - 8 - header_size;
    const Json header = parse_header(name, reinterpret_cast<const char*>(bytes + 8), header_size);

    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it->is_object()) bad(name, "__metadata__ is not a JSON object");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string()) bad(name, "__metadata__ value of '" + m.key() + "' is not a string");
                state->metadata.emplace(m.key(), m->get<std::string>());
            }
            continue;
        }
        state->entries.push_back(parse_entry(name, it.key(), *it, state->data_size));
    }

    auto& entries = state->entries;
    std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const SafetensorsEntry* previous = nullptr;
    for (const auto& entry : entries) {
        if (entry.begin == entry.end) continue;  // empty tensors occupy no bytes
        if (previous && entry.begin < previous->end)
            bad_tensor(name, entry.name, "data overlaps tensor '" + previous->name + "'");
        previous = &entry;
    }
    for (std::size_t i = 0; i < entries.size(); ++i) state->index.emplace(entries[i].name, i);
    return SafetensorsFile(std::move(state));
}

const std::string& SafetensorsFile::path() const noexcept { return state_->path; }
const std::vector<SafetensorsEntry>& SafetensorsFile::entries() const noexcept { return state_->entries; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const noexcept { return state_->metadata; }

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const noexcept {
    const auto it = state_->index.find(std::string(name));
    return it == state_->index.end() ? nullptr : &state_->entries[it->second];
}

Tensor SafetensorsFile::get(std::string_view name) const {
    const SafetensorsEntry* entry = find(name);
    if (!entry) bad_tensor(state_->path, std::string(name), "not in the file");
    if (!entry->dtype)
        bad_tensor(state_->path, entry->name, "dtype " + entry->dtype_name + " not supported (F32, F16 and BF16 are)");
    if (entry->dims.size() > static_cast<std::size_t>(kMaxRank))
        bad_tensor(state_->path, entry->name, std::to_string(entry->dims.size()) + " dimensions, at most " +
                                                  std::to_string(kMaxRank) + " are supported");
    const Shape shape = Shape::from_range(entry->dims.begin(), entry->dims.end());
    auto* data = const_cast<std::byte*>(state_->data_section + entry->begin);
    Tensor view = Tensor::borrow(data, *entry->dtype, shape, state_);
    const auto alignment = dtype_size(*entry->dtype);
    if (reinterpret_cast<std::uintptr_t>(data) % alignment != 0) return view.clone();
    return view;
}

}  // namespace unclip::io
