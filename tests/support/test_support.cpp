#include "test_support.hpp"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#ifndef UNCLIP_TEST_DATA_DIR
#error "UNCLIP_TEST_DATA_DIR must point at tests/data"
#endif

namespace unclip::test {

// The environment variable of the same name wins, for test programs run from another checkout
// (the GPU machine's copy of the tree).
std::filesystem::path data_path(const std::string& relative) {
    const char* moved = std::getenv("UNCLIP_TEST_DATA_DIR");
    return std::filesystem::path(moved && *moved ? moved : UNCLIP_TEST_DATA_DIR) / relative;
}

Fixture::Fixture(const std::string& relative) : file_(io::SafetensorsFile::open(data_path(relative).string())) {}

Tensor Fixture::operator[](const std::string& name) const { return file_.get(name); }

nn::WeightMap Fixture::weights(const std::string& prefix) const {
    nn::WeightMap map;
    for (const auto& entry : file_.entries())
        if (entry.name.compare(0, prefix.size(), prefix) == 0) map.insert(entry.name.substr(prefix.size()), file_.get(entry.name));
    return map;
}

nlohmann::json Fixture::config() const {
    const auto it = file_.metadata().find("config");
    if (it == file_.metadata().end()) throw Error(Status::bad_model, file_.path() + ": no 'config' metadata");
    return nlohmann::json::parse(it->second);
}

namespace {
std::vector<float> as_floats(const Tensor& t) {
    const Tensor f = t.device() == Device::cpu ? t.to(DType::f32) : t.to(Device::cpu).to(DType::f32);
    const float* p = f.data<const float>();
    return std::vector<float>(p, p + f.numel());
}
}  // namespace

Closeness compare(const Tensor& actual, const Tensor& expected) {
    Closeness c;
    if (actual.shape() != expected.shape()) {
        c.shapes_match = false;
        return c;
    }
    const auto a = as_floats(actual), e = as_floats(expected);
    double diff2 = 0, ref2 = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i])) ++c.nan_count;
        else if (std::isinf(a[i])) ++c.inf_count;
        const double d = static_cast<double>(a[i]) - e[i];
        diff2 += d * d;
        ref2 += static_cast<double>(e[i]) * e[i];
        if (!(std::fabs(d) <= c.max_abs)) {
            c.max_abs = std::fabs(d);
            c.max_index = static_cast<std::int64_t>(i);
        }
    }
    c.expected_norm = std::sqrt(ref2);
    c.rel_l2 = c.expected_norm > 0 ? std::sqrt(diff2) / c.expected_norm : INFINITY;
    return c;
}

bool close_enough(const Closeness& c, double tolerance) {
    return c.shapes_match && c.nan_count == 0 && c.inf_count == 0 && c.expected_norm > 0 && std::isfinite(c.rel_l2) &&
           c.rel_l2 <= tolerance;
}

std::string Closeness::describe() const {
    std::ostringstream out;
    if (!shapes_match) return "shapes differ";
    out << "rel. L2 " << rel_l2 << ", max abs " << max_abs << " at " << max_index << ", NaN " << nan_count << ", inf "
        << inf_count << ", |expected| " << expected_norm;
    return out.str();
}

TempDir::TempDir() {
    std::random_device rd;
    const auto base = std::filesystem::temp_directory_path();
    for (int attempt = 0; attempt < 100; ++attempt) {
        auto candidate = base / ("unclip-test-" + std::to_string(rd()));
        if (std::filesystem::create_directory(candidate)) {
            path_ = candidate;
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace unclip::test
