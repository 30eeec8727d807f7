// The convolution's im2col as each GPU thread does it, run thread by thread on the host: the
// 8-wide stride-1 layout (one 16-byte store per tap row) must write exactly the columns of the
// one-pixel-per-thread layout, and that layout the columns of the definition, with and without a
// folded GroupNorm (+ SiLU) applied to what they read, and from an input upsampled on the fly.
// Also the other launches' index arithmetic: GroupNorm's pieces and the per-plane kernels' rows.
// Runs without a GPU.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "context.cuh"
#include "group_split.cuh"
#include "im2col.cuh"

using unclip::cuda::Im2colGeometry;
using unclip::cuda::PlaneAffine;

namespace {

struct Case {
    int channels, height, width, kernel_h, pad_top, pad_left, pad_bottom, pad_right, row0, rows;
};

Im2colGeometry geometry(const Case& c, int images) {
    Im2colGeometry g;
    g.planes = std::int64_t{images} * c.channels;
    g.height = c.height;
    g.width = c.width;
    g.kernel_h = c.kernel_h;
    g.kernel_w = 3;
    g.pad_top = c.pad_top;
    g.pad_left = c.pad_left;
    g.out_w = c.width + c.pad_left + c.pad_right - 2;
    g.row0 = c.row0;
    g.rows = c.rows;
    return g;
}

// col[plane][ky][kx][r][ox] straight from the definition of a stride-1 convolution window, over
// the input mapped by f first (zero padding after the map, as a convolution of the map's output).
std::vector<float> reference_columns(std::vector<float> x, const Im2colGeometry& g, const PlaneAffine& f) {
    if (f.scale) {
        const std::int64_t plane_size = std::int64_t{g.height} * g.width;
        for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) {
            const std::int64_t p = i / plane_size;
            x[static_cast<std::size_t>(i)] = unclip::cuda::affine_value(x[static_cast<std::size_t>(i)], f.scale[p], f.shift[p], f.silu);
        }
    }
    std::vector<float> col(static_cast<std::size_t>(g.planes * g.taps() * g.band()));
    std::size_t i = 0;
    for (std::int64_t plane = 0; plane < g.planes; ++plane)
        for (int ky = 0; ky < g.kernel_h; ++ky)
            for (int kx = 0; kx < 3; ++kx)
                for (int r = 0; r < g.rows; ++r)
                    for (int ox = 0; ox < g.out_w; ++ox) {
                        const int iy = g.row0 + r - g.pad_top + ky, ix = ox - g.pad_left + kx;
                        const bool inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width;
                        col[i++] = inside ? x[static_cast<std::size_t>((plane * g.height + iy) * g.width + ix)] : 0.0f;
                    }
    return col;
}

template <class To>
std::vector<To> pixel_columns(const std::vector<float>& x, const Im2colGeometry& g, const PlaneAffine& f, To poison) {
    std::vector<To> col(static_cast<std::size_t>(g.planes * g.taps() * g.band()), poison);
    for (std::int64_t plane = 0; plane < g.planes; ++plane)
        for (int r = 0; r < g.rows; ++r)
            for (int ox = 0; ox < g.out_w; ++ox) unclip::cuda::im2col_pixel(x.data(), col.data(), g, f, ox, r, plane);
    return col;
}

// Octet stores need 8-element alignment, which std::vector<To> does not promise for __half.
template <class To>
struct AlignedColumns {
    std::vector<unclip::cuda::Octet<To>> storage;
    To* data() { return storage.front().v; }
};

template <class To>
AlignedColumns<To> octet_columns(const std::vector<float>& x, const Im2colGeometry& g, const PlaneAffine& f, To poison) {
    AlignedColumns<To> col;
    unclip::cuda::Octet<To> filled;
    for (To& v : filled.v) v = poison;
    col.storage.assign(static_cast<std::size_t>(g.planes * g.taps() * g.band() / 8), filled);
    for (std::int64_t plane = 0; plane < g.planes; ++plane)
        for (int r = 0; r < g.rows; ++r)
            for (int group = 0; group < g.out_w / 8; ++group)
                unclip::cuda::im2col_octet_3wide(x.data(), col.data(), g, f, group, r, plane);
    return col;
}

const Case kCases[] = {
    {3, 16, 16, 3, 1, 1, 1, 1, 0, 16},   // the usual 3x3, pad 1, whole image
    {2, 12, 24, 3, 1, 1, 1, 1, 5, 4},    // a band of rows in the middle
    {2, 9, 24, 3, 0, 1, 1, 1, 0, 7},     // uneven padding (no top pad)
    {1, 7, 16, 3, 0, 0, 1, 2, 0, 5},     // padding on the right only
    {2, 5, 8, 1, 0, 1, 0, 1, 0, 5},      // one kernel row, 3 wide
    {1, 3, 8, 3, 2, 1, 2, 1, 0, 5},      // padding taller than the image's rows
    {2, 10, 40, 3, 1, 1, 1, 1, 9, 1},    // the last row of the image alone
};

// Per-plane scale and shift of a folded GroupNorm, and the map itself (with or without SiLU).
struct Affine {
    std::vector<float> scale, shift;
    PlaneAffine map(bool silu) const { return {scale.data(), shift.data(), silu}; }
    explicit Affine(std::int64_t planes) {
        std::mt19937 rng(3);
        std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
        for (std::int64_t p = 0; p < planes; ++p) scale.push_back(dist(rng)), shift.push_back(dist(rng));
    }
};

std::vector<float> random_input(const Im2colGeometry& g, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
    std::vector<float> x(static_cast<std::size_t>(g.planes * g.height * g.width));
    for (float& v : x) v = dist(rng);
    return x;
}

}  // namespace

TEST_CASE("im2col: one thread per pixel writes the columns of the definition, mapped or not") {
    for (const Case& c : kCases) {
        const Im2colGeometry g = geometry(c, 2);
        const std::vector<float> x = random_input(g, 7);
        const Affine affine(g.planes);
        for (const PlaneAffine& f : {PlaneAffine{}, affine.map(false), affine.map(true)}) {
            INFO("channels " << c.channels << " " << c.height << "x" << c.width << " mapped " << (f.scale != nullptr)
                             << " silu " << f.silu);
            const std::vector<float> want = reference_columns(x, g, f);
            const std::vector<float> got = pixel_columns(x, g, f, std::nanf(""));
            CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("im2col: eight pixels per thread write the same fp32, fp16 and bf16 columns as one per thread") {
    for (const Case& c : kCases) {
        const Im2colGeometry g = geometry(c, 3);
        REQUIRE(unclip::cuda::octet_im2col_fits(g));
        const std::vector<float> x = random_input(g, 11);
        const Affine affine(g.planes);
        for (const PlaneAffine& f : {PlaneAffine{}, affine.map(false), affine.map(true)}) {
            INFO("channels " << c.channels << " " << c.height << "x" << c.width << " kernel_h " << c.kernel_h << " rows "
                             << c.row0 << "+" << c.rows << " mapped " << (f.scale != nullptr) << " silu " << f.silu);
            const auto compare = [&](auto poison) {
                using To = decltype(poison);
                const std::vector<To> want = pixel_columns(x, g, f, poison);
                AlignedColumns<To> got = octet_columns(x, g, f, poison);
                return std::memcmp(got.data(), want.data(), want.size() * sizeof(To)) == 0;
            };
            CHECK(compare(std::nanf("")));
            CHECK(compare(__float2half_rn(std::nanf(""))));
            CHECK(compare(__float2bfloat16_rn(std::nanf(""))));
        }
    }
}

TEST_CASE("im2col: an input upsampled by 2 is read through the upsampling, as if it had been stored") {
    for (const Case& c : kCases) {
        if (c.height % 2 != 0 || c.width % 2 != 0) continue;
        Im2colGeometry plain = geometry(c, 2);
        Im2colGeometry upsampled = plain;
        upsampled.upsample_shift = 1;
        const int low_h = c.height / 2, low_w = c.width / 2;
        std::mt19937 rng(19);
        std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
        std::vector<float> low(static_cast<std::size_t>(plain.planes * low_h * low_w));
        for (float& v : low) v = dist(rng);
        std::vector<float> stored(static_cast<std::size_t>(plain.planes * c.height * c.width));
        for (std::int64_t p = 0; p < plain.planes; ++p)
            for (int y = 0; y < c.height; ++y)
                for (int x = 0; x < c.width; ++x)
                    stored[static_cast<std::size_t>((p * c.height + y) * c.width + x)] =
                        low[static_cast<std::size_t>((p * low_h + y / 2) * low_w + x / 2)];
        const Affine affine(plain.planes);
        for (const PlaneAffine& f : {PlaneAffine{}, affine.map(true)}) {
            INFO("channels " << c.channels << " " << c.height << "x" << c.width << " rows " << c.row0 << "+" << c.rows
                             << " mapped " << (f.scale != nullptr));
            const std::vector<float> want = pixel_columns(stored, plain, f, std::nanf(""));
            const std::vector<float> got = pixel_columns(low, upsampled, f, std::nanf(""));
            CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
            const __half poison = __float2half_rn(std::nanf(""));
            const std::vector<__half> want_half = pixel_columns(stored, plain, f, poison);
            AlignedColumns<__half> got_half = octet_columns(low, upsampled, f, poison);
            CHECK(std::memcmp(got_half.data(), want_half.data(), want_half.size() * sizeof(__half)) == 0);
        }
    }
}

TEST_CASE("im2col: a 1x1 pass writes the mapped, upsampled input itself (cuDNN's input), plane by plane") {
    // cudnn_conv.cu's input pass: kernel 1x1, no padding, the whole image as one band.
    const int planes = 6, low_h = 5, low_w = 7;
    Im2colGeometry g;
    g.planes = planes;
    g.height = 2 * low_h;
    g.width = 2 * low_w;
    g.kernel_h = g.kernel_w = 1;
    g.out_w = g.width;
    g.rows = g.height;
    g.upsample_shift = 1;
    std::mt19937 rng(23);
    std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
    std::vector<float> low(static_cast<std::size_t>(planes * low_h * low_w));
    for (float& v : low) v = dist(rng);
    const Affine affine(planes);
    for (const PlaneAffine& f : {PlaneAffine{}, affine.map(false), affine.map(true)}) {
        INFO("mapped " << (f.scale != nullptr) << " silu " << f.silu);
        std::vector<float> want(static_cast<std::size_t>(planes * g.height * g.width));
        for (int p = 0; p < planes; ++p)
            for (int y = 0; y < g.height; ++y)
                for (int x = 0; x < g.width; ++x) {
                    const float v = low[static_cast<std::size_t>((p * low_h + y / 2) * low_w + x / 2)];
                    want[static_cast<std::size_t>((p * g.height + y) * g.width + x)] =
                        f.scale ? unclip::cuda::affine_value(v, f.scale[p], f.shift[p], f.silu) : v;
                }
        const std::vector<float> got = pixel_columns(low, g, f, std::nanf(""));
        REQUIRE(got.size() == want.size());
        CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("im2col: the launch's threads take each column of each band row once, row after row") {
    for (const int per_row : {1, 3, 12, 96})
        for (const int rows : {1, 7, 96}) {
            INFO(per_row << " columns, " << rows << " rows");
            std::vector<int> seen(static_cast<std::size_t>(per_row * rows), 0);
            bool in_order = true;
            for (int i = 0; i < per_row * rows; ++i) {
                const unclip::cuda::BandPosition at = unclip::cuda::band_position(i, per_row);
                REQUIRE((at.row >= 0 && at.row < rows && at.column >= 0 && at.column < per_row));
                ++seen[static_cast<std::size_t>(at.row * per_row + at.column)];
                in_order = in_order && at.row * per_row + at.column == i;  // neighbouring threads, neighbouring columns
            }
            CHECK(in_order);
            CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
        }
}

TEST_CASE("im2col: the 8-wide layout is only chosen where it applies") {
    Im2colGeometry g = geometry(kCases[0], 1);
    CHECK(unclip::cuda::octet_im2col_fits(g));
    g.stride = 2;
    CHECK_FALSE(unclip::cuda::octet_im2col_fits(g));
    g = geometry(kCases[0], 1);
    g.out_w = 12;
    CHECK_FALSE(unclip::cuda::octet_im2col_fits(g));
    g = geometry(kCases[0], 1);
    g.kernel_w = 1;
    CHECK_FALSE(unclip::cuda::octet_im2col_fits(g));
}

TEST_CASE("GroupNorm statistics: the pieces of a group cover each element once, within one channel when aligned") {
    struct Shape {
        std::int64_t per_group, spatial, groups_total;
    };
    for (const Shape s : {Shape{10, 9216, 64}, Shape{4, 589824, 32}, Shape{1, 5, 3}, Shape{16, 6, 64}, Shape{3, 1000, 7}})
        for (const bool aligned : {false, true}) {
            INFO("per_group " << s.per_group << " spatial " << s.spatial << " aligned " << aligned);
            const unclip::cuda::GroupSplit split =
                unclip::cuda::split_groups(s.per_group, s.spatial, s.groups_total, 8 * 132, 8 * 256, aligned);
            std::vector<int> covered(static_cast<std::size_t>(s.per_group * s.spatial), 0);
            bool pieces_ok = true;
            for (std::int64_t k = 0; k < split.splits; ++k) {
                const unclip::cuda::GroupPiece p = unclip::cuda::group_piece(split, s.per_group, s.spatial, k);
                pieces_ok = pieces_ok && p.begin < p.end;
                if (aligned)
                    pieces_ok = pieces_ok && p.begin >= p.channel * s.spatial && p.end <= (p.channel + 1) * s.spatial;
                // group_partials_kernel reads 4-wide where these are multiples of 4 (norm.cu).
                if ((aligned ? s.spatial : s.per_group * s.spatial) % 4 == 0)
                    pieces_ok = pieces_ok && p.begin % 4 == 0 && p.end % 4 == 0;
                for (std::int64_t i = p.begin; i < p.end; ++i) ++covered[static_cast<std::size_t>(i)];
            }
            CHECK(pieces_ok);
            CHECK(split.splits <= 65535);  // the launch's gridDim.y
            CHECK(std::all_of(covered.begin(), covered.end(), [](int n) { return n == 1; }));
        }
}

TEST_CASE("plane launches: the rows of threads visit every item of every plane once, small planes sharing a block") {
    struct Shape {
        std::int64_t planes, per_plane;
    };
    // The UNet's 12 px level (36 float4 per plane), a 96 px plane, planes beyond the grid's 65535
    // rows of blocks, items beyond 1024 blocks of 256.
    for (const Shape s : {Shape{2560, 36}, Shape{640, 2304}, Shape{3, 1}, Shape{7, 100}, Shape{600000, 3}, Shape{2, 300000}}) {
        INFO("planes " << s.planes << " per plane " << s.per_plane);
        const unclip::cuda::PlaneLaunch launch = unclip::cuda::plane_launch(s.planes, s.per_plane, 256);
        CHECK(launch.block.x * launch.block.y == 256);
        CHECK(launch.block.x >= 32);
        CHECK(launch.grid.y <= 65535);
        if (s.per_plane <= 32) CHECK(launch.block.y == 8);  // eight small planes per block
        std::vector<std::uint8_t> visits(static_cast<std::size_t>(s.planes * s.per_plane), 0);
        // The kernels' loops (first_plane / plane_stride, first_index / grid_stride), thread by thread.
        const std::int64_t plane_step = std::int64_t{launch.grid.y} * launch.block.y;
        const std::int64_t item_step = std::int64_t{launch.grid.x} * launch.block.x;
        for (std::int64_t first_plane = 0; first_plane < plane_step; ++first_plane)
            for (std::int64_t plane = first_plane; plane < s.planes; plane += plane_step)
                for (std::int64_t first_item = 0; first_item < item_step; ++first_item)
                    for (std::int64_t i = first_item; i < s.per_plane; i += item_step)
                        ++visits[static_cast<std::size_t>(plane * s.per_plane + i)];
        CHECK(std::all_of(visits.begin(), visits.end(), [](std::uint8_t n) { return n == 1; }));
    }
}
