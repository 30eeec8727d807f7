// Blends and DALL-E 2 text-diff edits, built on mix_embeddings and slerp_embeddings.
#include <cmath>
#include <string>

#include "unclip/error.hpp"
#include "unclip/pipeline.hpp"

namespace unclip {
namespace {
double l2_norm(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return std::sqrt(s);
}
}  // namespace

std::vector<float> blend_embeddings(const std::vector<std::vector<float>>& embeddings, const std::vector<float>& weights) {
    if (embeddings.empty() || embeddings.size() != weights.size())
        throw Error(Status::invalid_argument, "blend_embeddings: " + std::to_string(embeddings.size()) + " embeddings and " +
                                                  std::to_string(weights.size()) + " weights");
    double total = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        if (!std::isfinite(weights[i]) || weights[i] < 0)
            throw Error(Status::invalid_argument, "blend_embeddings: weight " + std::to_string(i) + " is not a finite value >= 0");
        total += weights[i];
    }
    if (total <= 0) throw Error(Status::invalid_argument, "blend_embeddings: all weights are zero");
    std::vector<float> blend;
    double so_far = 0;
    for (std::size_t i = 0; i < embeddings.size(); ++i) {
        if (weights[i] == 0) continue;
        so_far += weights[i];
        // The first input is validated by the mix (size, finiteness); later ones by slerp.
        blend = blend.empty() ? mix_embeddings({embeddings[i]}, {1.0f})
                              : slerp_embeddings(blend, embeddings[i], static_cast<float>(weights[i] / so_far));
    }
    for (std::size_t i = 0; i < embeddings.size(); ++i)
        if (embeddings[i].size() != blend.size())
            throw Error(Status::invalid_argument, "blend_embeddings: embedding " + std::to_string(i) + " has " +
                                                      std::to_string(embeddings[i].size()) + " values, the others " +
                                                      std::to_string(blend.size()));
    return blend;
}

std::vector<float> text_diff_embedding(const std::vector<float>& image_embedding, const std::vector<float>& source_text,
                                       const std::vector<float>& target_text, float alpha, float theta) {
    if (!std::isfinite(alpha)) throw Error(Status::invalid_argument, "text_diff_embedding: alpha is not finite");
    if (!(theta >= 0.0f && theta <= 1.0f))
        throw Error(Status::invalid_argument, "text_diff_embedding: theta " + std::to_string(theta) + " is not in [0, 1]");
    if (source_text.size() != image_embedding.size() || target_text.size() != image_embedding.size())
        throw Error(Status::invalid_argument, "text_diff_embedding: image embedding has " +
                                                  std::to_string(image_embedding.size()) + " values, text embeddings " +
                                                  std::to_string(source_text.size()) + " and " + std::to_string(target_text.size()));
    // d = z + alpha (t_target - t_source), validated (finite, same sizes) by the mix.
    const std::vector<float> d = mix_embeddings({image_embedding, target_text, source_text}, {1.0f, alpha, -alpha});
    const double image_norm = l2_norm(image_embedding), d_norm = l2_norm(d);
    if (image_norm == 0) throw Error(Status::invalid_argument, "text_diff_embedding: zero image embedding");
    if (!(d_norm > 0) || !std::isfinite(d_norm))
        throw Error(Status::invalid_argument, "text_diff_embedding: the edited embedding is zero or not finite");
    const std::vector<float> direction = mix_embeddings({d}, {static_cast<float>(image_norm / d_norm)});
    return slerp_embeddings(image_embedding, direction, theta);
}

}  // namespace unclip
