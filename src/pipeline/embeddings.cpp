// Embedding arithmetic for blends and edits.
#include <cmath>
#include <string>

#include "unclip/error.hpp"
#include "unclip/pipeline.hpp"

namespace unclip {
namespace {
void check_finite(const std::vector<float>& v, const char* what) {
    if (v.empty()) throw Error(Status::invalid_argument, std::string(what) + ": empty embedding");
    for (std::size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]))
            throw Error(Status::invalid_argument, std::string(what) + ": element " + std::to_string(i) + " is not finite");
}
double norm(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return std::sqrt(s);
}
}  // namespace

std::vector<float> mix_embeddings(const std::vector<std::vector<float>>& embeddings, const std::vector<float>& weights) {
    if (embeddings.empty() || embeddings.size() != weights.size())
        throw Error(Status::invalid_argument, "mix_embeddings: " + std::to_string(embeddings.size()) + " embeddings and " +
                                                  std::to_string(weights.size()) + " weights");
    std::vector<double> sum(embeddings.front().size(), 0.0);
    for (std::size_t i = 0; i < embeddings.size(); ++i) {
        check_finite(embeddings[i], "mix_embeddings");
        if (embeddings[i].size() != sum.size())
            throw Error(Status::invalid_argument, "mix_embeddings: embedding " + std::to_string(i) + " has " +
                                                      std::to_string(embeddings[i].size()) + " values, the first " +
                                                      std::to_string(sum.size()));
        if (!std::isfinite(weights[i]))
            throw Error(Status::invalid_argument, "mix_embeddings: weight " + std::to_string(i) + " is not finite");
        for (std::size_t j = 0; j < sum.size(); ++j) sum[j] += static_cast<double>(weights[i]) * embeddings[i][j];
    }
    return std::vector<float>(sum.begin(), sum.end());
}

std::vector<float> slerp_embeddings(const std::vector<float>& a, const std::vector<float>& b, float t) {
    check_finite(a, "slerp_embeddings");
    check_finite(b, "slerp_embeddings");
    if (a.size() != b.size())
        throw Error(Status::invalid_argument, "slerp_embeddings: sizes " + std::to_string(a.size()) + " and " +
                                                  std::to_string(b.size()) + " differ");
    if (!std::isfinite(t)) throw Error(Status::invalid_argument, "slerp_embeddings: t is not finite");
    const double na = norm(a), nb = norm(b);
    if (na == 0 || nb == 0) throw Error(Status::invalid_argument, "slerp_embeddings: zero embedding");
    double dot = 0;
    for (std::size_t i = 0; i < a.size(); ++i) dot += (a[i] / na) * (b[i] / nb);
    const double omega = std::acos(std::max(-1.0, std::min(1.0, dot)));
    const double magnitude = (1 - t) * na + t * nb;
    std::vector<float> out(a.size());
    if (omega < 1e-6) {  // (nearly) parallel: the interpolation is linear
        for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<float>(((1 - t) * a[i] / na + t * b[i] / nb) * magnitude);
        return out;
    }
    const double wa = std::sin((1 - t) * omega) / std::sin(omega), wb = std::sin(t * omega) / std::sin(omega);
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<float>((wa * a[i] / na + wb * b[i] / nb) * magnitude);
    return out;
}

}  // namespace unclip
