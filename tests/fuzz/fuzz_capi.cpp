// Fuzz target: parameter validation of the C API. The input is a little program: each step picks
// an entry point and fills its arguments from the bytes that follow, within what the C contract
// lets a caller do (buffers always hold what their sizes claim, unless the claim is over the
// limits and must be refused before any pixel is read). Every call must return a status; crashes,
// aborts and escaped exceptions are findings.
#include <unclip.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "unclip/io/random_checkpoint.hpp"
#include "unclip/io/tiny_model.hpp"

extern "C" {
const char* unclip_fuzz_sampler_name(int value);
const char* unclip_fuzz_scheduler_name(int value);
const char* unclip_fuzz_status_name(int value);
}

namespace {

class Bytes {
public:
    Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    bool empty() const noexcept { return pos_ >= size_; }
    std::uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
    std::uint32_t u32() {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t{u8()} << (8 * i);
        return v;
    }
    std::uint64_t u64() { return std::uint64_t{u32()} | std::uint64_t{u32()} << 32; }
    template <class T, std::size_t N>
    T pick(const T (&values)[N]) { return values[u8() % N]; }
    float real() {
        static const float kSpecial[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 8.0f, 100.0f, 100.5f, -10.5f, 10.0f,
                                         std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                                         std::numeric_limits<float>::denorm_min(), 1e30f};
        if (u8() & 1) return pick(kSpecial);
        const std::uint32_t bits = u32();
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }
    std::string text(std::size_t max) {
        const std::size_t wanted = u8() % (max + 1);  // read first: it moves pos_
        const std::size_t n = std::min<std::size_t>(wanted, size_ - std::min(pos_, size_));
        std::string s(reinterpret_cast<const char*>(data_) + std::min(pos_, size_), n);
        pos_ += n;
        return s;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

// Stores any int in an enum field, as C may (see fuzz_capi_enums.c for enum arguments).
template <class E>
void set_enum(E& field, int value) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    std::memcpy(&field, &value, sizeof value);
}

// Sides the library must accept (small) or refuse before reading (over 8192, the default input
// limit, or not positive).
const int kSides[] = {-1, 0, 1, 7, 8, 16, 17, 24, 40, 64, 8193, 100000, INT_MAX, INT_MIN};
const std::size_t kSmallBuffer = 64;

bool refused_before_reading(int width, int height, int channels) {
    return width <= 0 || height <= 0 || width > 8192 || height > 8192 || channels < 1 || channels > 4 ||
           static_cast<std::int64_t>(width) * height > 8192LL * 8192LL;
}

// An image view whose buffer holds what the view claims (or a small buffer for a refused claim).
unclip_image_view image_view(Bytes& in, std::vector<std::vector<std::uint8_t>>& keep) {
    unclip_image_view v{};
    if (in.u8() % 3 == 0) return v;  // no image
    v.width = in.pick(kSides);
    v.height = in.pick(kSides);
    v.channels = static_cast<int>(in.u8() % 7) - 1;
    const std::size_t extra = in.u8() % 4;
    const bool refused = refused_before_reading(v.width, v.height, v.channels);
    std::size_t bytes = kSmallBuffer;
    if (!refused) {
        const std::size_t row = static_cast<std::size_t>(v.width) * static_cast<std::size_t>(v.channels);
        const int stride_kind = in.u8() % 3;  // packed (0), padded, or one byte short (refused)
        v.row_stride = stride_kind == 0 ? 0 : stride_kind == 1 ? row + extra : row - 1;
        bytes = std::max(row, v.row_stride) * static_cast<std::size_t>(v.height);
    }
    keep.emplace_back(std::max<std::size_t>(bytes, 1));
    for (auto& b : keep.back()) b = in.u8();
    v.pixels = keep.back().data();
    return v;
}

unclip_pipeline* tiny_pipeline() {
    static unclip::fuzz::ScratchFile scratch("tiny-unclip-h.safetensors");
    static unclip_pipeline* pipeline = [] {
        const std::string path = (scratch.dir() / "tiny-unclip-h.safetensors").string();
        unclip::io::RandomCheckpointOptions options;
        options.dtype = unclip::DType::f32;
        options.seed = 7;
        unclip::io::write_random_checkpoint(path, unclip::io::tiny_unclip_config(), options);
        unclip_open_params open;
        unclip_open_default_params(&open);
        open.model_path = path.c_str();
        open.allow_reduced = true;
        open.threads = 1;
        // Valid generations stay small, also when a short struct_size leaves the defaults (768).
        open.max_output_side = 64;
        unclip_pipeline* p = nullptr;
        if (unclip_pipeline_open(&open, &p) != UNCLIP_STATUS_OK) {
            std::fprintf(stderr, "fuzz_capi: the tiny model does not open: %s\n", unclip_last_error());
            std::abort();
        }
        return p;
    }();
    return pipeline;
}

// A status must be one of the enum's values, and a failure must say what failed.
void check(unclip_status status, const char* message) {
    if (static_cast<int>(status) < 0 || static_cast<int>(status) > UNCLIP_STATUS_INTERNAL) std::abort();
    if (status == UNCLIP_STATUS_INTERNAL) std::abort();  // a bug by definition
    if (status != UNCLIP_STATUS_OK && (!message || !*message)) std::abort();
}

struct ProgressProbe {
    unclip_pipeline* pipeline;
    int stop_after;
    int calls = 0;
};

bool on_progress(const unclip_progress* progress, void* user) {
    auto* probe = static_cast<ProgressProbe*>(user);
    // Read-only calls from inside the callback are allowed.
    if (unclip_pipeline_embedding_size(probe->pipeline) <= 0) std::abort();
    (void)unclip_pipeline_last_error(probe->pipeline);
    if (progress->step < 1 || progress->step > progress->steps) std::abort();
    return ++probe->calls < probe->stop_after;
}

void fuzz_generate(Bytes& in) {
    unclip_pipeline* pipeline = tiny_pipeline();
    std::vector<std::vector<std::uint8_t>> keep;
    std::vector<std::vector<float>> embeddings;

    // The params struct, as an older, current or newer caller lays it out.
    const std::size_t size_kind = in.u8() % 4;
    const std::size_t struct_size = size_kind == 0   ? sizeof(unclip_generate_params)
                                    : size_kind == 1 ? in.u8() % (sizeof(unclip_generate_params) + 1)
                                                     : sizeof(unclip_generate_params) + in.u8() % 16;
    std::vector<unsigned char> storage(std::max(struct_size, sizeof(unclip_generate_params)), 0);
    auto* p = reinterpret_cast<unclip_generate_params*>(storage.data());
    unclip_generate_default_params(p);
    p->struct_size = static_cast<std::uint32_t>(struct_size);
    if (struct_size > sizeof(unclip_generate_params) && (in.u8() & 1))
        storage[sizeof(unclip_generate_params) + (in.u8() % (struct_size - sizeof(unclip_generate_params)))] = 1;

    const int n_images = static_cast<int>(in.u8() % 4) - 1;
    std::vector<unclip_conditioning> conds(static_cast<std::size_t>(std::max(n_images, 0)));
    for (auto& c : conds) {
        unclip_conditioning_default(&c);
        // Older or newer callers' sizes; a size past the struct would claim bytes the caller does not have.
        if (in.u8() % 5 == 0) c.struct_size = in.u8() % (sizeof c + 1);
        c.image = image_view(in, keep);
        if (!c.image.pixels && (in.u8() & 1)) {
            static const int kSizes[] = {-1, 0, 1, 1023, 1024};
            c.embedding_size = in.pick(kSizes);
            embeddings.emplace_back(static_cast<std::size_t>(std::max(c.embedding_size, 1)));
            for (auto& e : embeddings.back()) e = (in.u8() & 0x80) ? in.real() : static_cast<float>(in.u8()) / 64.0f;
            c.embedding = embeddings.back().data();
        }
        if (in.u8() & 1) c.strength = in.real();
        if (in.u8() & 1) c.noise_augmentation = in.real();
    }
    p->images = n_images < 0 ? nullptr : conds.data();
    p->n_images = n_images < 0 ? static_cast<int>(in.u8() % 3) - 1 : n_images;
    const std::string prompt = in.text(120), negative = in.text(40);
    p->prompt = (in.u8() & 1) ? prompt.c_str() : nullptr;
    p->negative_prompt = (in.u8() & 1) ? negative.c_str() : nullptr;
    static const int kSteps[] = {-1, 0, 1, 2, 1001, INT_MAX};
    p->steps = in.pick(kSteps);
    if (in.u8() & 1) p->cfg_scale = in.real();
    set_enum(p->sampler, static_cast<int>(in.u8() % 12) - 1);
    set_enum(p->scheduler, static_cast<int>(in.u8() % 8) - 1);
    p->seed = in.u64();
    static const int kOutSides[] = {-8, 0, 7, 8, 16, 24, 33, 64, 4104, 8200, 100000, INT_MAX};
    p->width = in.pick(kOutSides);
    p->height = in.pick(kOutSides);
    static const int kBatches[] = {-1, 0, 1, 2, 65, INT_MIN};
    p->batch_count = in.pick(kBatches);
    p->init_image = image_view(in, keep);
    if (in.u8() & 1) p->denoise = in.real();
    p->mask = image_view(in, keep);
    p->preview = in.u8() & 1;
    ProgressProbe probe{pipeline, 1 + in.u8() % 2};
    p->on_progress = on_progress;
    p->on_progress_user = &probe;
    if (p->steps > 2 && p->steps <= 1000) p->steps = 2;  // a valid run stays short

    if (std::getenv("UNCLIP_FUZZ_VERBOSE"))
        std::fprintf(stderr, "generate: struct_size %zu, %d images, steps %d, cfg %g, %dx%d, batch %d, init %dx%d, mask %dx%d\n",
                     struct_size, p->n_images, p->steps, static_cast<double>(p->cfg_scale), p->width, p->height,
                     p->batch_count, p->init_image.width, p->init_image.height, p->mask.width, p->mask.height);
    unclip_images* out = nullptr;
    const unclip_status status = unclip_generate(pipeline, p, &out);
    check(status, unclip_pipeline_last_error(pipeline));
    if (status == UNCLIP_STATUS_OK) {
        if (!out) std::abort();
        unclip_image_view view;
        for (int32_t i = 0; i < unclip_images_count(out); ++i)
            if (unclip_images_get(out, i, &view) != UNCLIP_STATUS_OK || !view.pixels) std::abort();
    } else if (out) {
        std::abort();  // out parameters stay untouched on failure
    }
    unclip_images_free(out);
}

void fuzz_open(Bytes& in) {
    unclip_open_params open;
    unclip_open_default_params(&open);
    const std::string model = in.text(16);
    const std::string paths[] = {"", "/nonexistent/model.safetensors", model};
    open.model_path = (in.u8() & 1) ? paths[in.u8() % 3].c_str() : nullptr;
    open.unet_path = (in.u8() & 1) ? paths[in.u8() % 3].c_str() : nullptr;
    open.vae_path = (in.u8() & 1) ? paths[in.u8() % 3].c_str() : nullptr;
    open.text_encoder_path = (in.u8() & 1) ? paths[in.u8() % 3].c_str() : nullptr;
    open.clip_vision_path = (in.u8() & 1) ? paths[in.u8() % 3].c_str() : nullptr;
    static const int kThreads[] = {-1, 0, 1, 2, 1 << 20, INT_MAX, INT_MIN};
    open.threads = in.pick(kThreads);
    set_enum(open.prediction, static_cast<int>(in.u8() % 5) - 1);
    static const int kCaps[] = {-1, 0, 8, 64, INT_MAX, INT_MIN};
    open.max_output_side = in.pick(kCaps);
    open.max_prompt_bytes = in.pick(kCaps);
    open.struct_size = (in.u8() & 1) ? in.u8() % (sizeof open + 1) : sizeof open;
    unclip_pipeline* pipeline = nullptr;
    const unclip_status status = unclip_pipeline_open((in.u8() % 8) ? &open : nullptr, &pipeline);
    check(status, unclip_last_error());
    if (status != UNCLIP_STATUS_OK && pipeline) std::abort();
    unclip_pipeline_free(pipeline);
}

void fuzz_small_calls(Bytes& in) {
    const std::string name = in.text(24);
    unclip_sampler sampler;
    unclip_scheduler scheduler;
    const bool null_name = in.u8() % 8 == 0;
    check(unclip_sampler_from_name(null_name ? nullptr : name.c_str(), &sampler), unclip_last_error());
    check(unclip_scheduler_from_name(name.c_str(), (in.u8() % 8) ? &scheduler : nullptr), unclip_last_error());
    const int raw = static_cast<int>(in.u32());
    (void)unclip_fuzz_sampler_name(raw);
    (void)unclip_fuzz_scheduler_name(raw);
    if (!unclip_fuzz_status_name(raw)) std::abort();

    // Embedding arithmetic with consistent buffers: count vectors of n floats.
    const int count = static_cast<int>(in.u8() % 5) - 1, n = static_cast<int>(in.u8() % 9) - 1;
    std::vector<std::vector<float>> vectors(static_cast<std::size_t>(std::max(count, 0)),
                                            std::vector<float>(static_cast<std::size_t>(std::max(n, 1))));
    std::vector<const float*> pointers;
    for (auto& v : vectors) {
        for (auto& x : v) x = in.real();
        pointers.push_back((in.u8() % 16) ? v.data() : nullptr);
    }
    std::vector<float> weights(static_cast<std::size_t>(std::max(count, 1)));
    for (auto& w : weights) w = in.real();
    std::vector<float> out(static_cast<std::size_t>(std::max(n, 1)));
    check(unclip_embedding_mix(pointers.empty() ? nullptr : pointers.data(), weights.data(), count, n, out.data()),
          unclip_last_error());
    if (vectors.size() >= 2)
        check(unclip_embedding_slerp(vectors[0].data(), vectors[1].data(), n, in.real(), out.data()), unclip_last_error());

    // Image views: PNG encoding of whatever the view claims.
    std::vector<std::vector<std::uint8_t>> keep;
    const unclip_image_view view = image_view(in, keep);
    static unclip::fuzz::ScratchFile scratch("out.png");
    const std::string png = (scratch.dir() / "out.png").string();
    check(unclip_image_save_png(&view, png.c_str()), unclip_last_error());
    unclip_pipeline* pipeline = tiny_pipeline();
    std::vector<float> embedding(1024);
    const int32_t capacity = static_cast<int32_t>(in.u8() % 2 ? 1024 : in.u8() % 1025);
    const unclip_status encoded = unclip_pipeline_encode_image(pipeline, &view, embedding.data(), capacity);
    check(encoded, unclip_pipeline_last_error(pipeline));

    unclip_images* images = nullptr;
    check(unclip_image_load(png.c_str(), &images), unclip_last_error());
    unclip_image_view got;
    check(unclip_images_get(images, static_cast<int32_t>(in.u32()), &got), unclip_last_error());
    unclip_images_free(images);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Bytes in(data, size);
    for (int calls = 0; !in.empty() && calls < 4; ++calls) {
        switch (in.u8() % 3) {
            case 0: fuzz_generate(in); break;
            case 1: fuzz_open(in); break;
            default: fuzz_small_calls(in); break;
        }
    }
    return 0;
}
