// How a weight map is laid out on the GPU (nn::upload_weights), checked on the host: every tensor a
// module took goes up once, and each self-attention's q, k and v matrices lie back to back.
#include <map>
#include <set>
#include <string>

#include "nn/weights_device.hpp"
#include "test_support.hpp"
#include "unet_fixture.hpp"
#include "unclip/nn/instances.hpp"

using namespace unclip;

TEST_SUITE("foundation") {

TEST_CASE("the GPU upload puts each UNet self-attention's to_q, to_k, to_v together and every taken tensor once") {
    // (A cross-attention whose context is as wide as its channels, as in this tiny model, is
    // grouped too; it projects the context, so MultiHeadAttention never fuses it.)
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::WeightMap host = fx.weights("unet.");
    const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(host, "", cfg));  // marks what it takes
    for (const bool bf16 : {false, true}) {
        INFO("bf16 " << bf16);
        const auto groups = nn::detail::upload_groups(host, bf16);
        std::map<std::string, int> seen;
        std::set<std::string> triples;  // their prefixes
        for (const auto& g : groups) {
            for (const auto& name : g) ++seen[name];
            if (g.size() == 1) continue;
            REQUIRE(g.size() == 3);
            const std::string prefix = g[0].substr(0, g[0].size() - std::string("to_q.weight").size());
            CHECK(g[0] == prefix + "to_q.weight");
            CHECK(g[1] == prefix + "to_k.weight");
            CHECK(g[2] == prefix + "to_v.weight");
            triples.insert(prefix);
        }
        std::size_t self_attentions = 0, taken = 0;
        for (const auto& [name, tensor] : host.tensors()) {
            const auto at = name.find("attn1.to_q.weight");
            if (at != std::string::npos) {
                ++self_attentions;
                CHECK_MESSAGE(triples.count(name.substr(0, at + 6)) == 1, name);
            }
            if (!host.requested(name)) continue;
            ++taken;
            CHECK_MESSAGE(seen[name] == 1, name);
        }
        CHECK(seen.size() == taken);
        CHECK(self_attentions > 0);
    }
}

}  // TEST_SUITE
