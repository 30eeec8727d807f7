#include "unclip/io/tiny_model.hpp"

namespace unclip::io {

ModelConfig tiny_unclip_config() {
    ModelConfig c = reference_config(Variant::unclip_h);
    c.reduced = true;
    c.unet.model_channels = 64;  // a multiple of the 64-wide attention heads SD 2.x files imply
    c.unet.channel_mult = {1, 2, 2, 2};
    c.unet.context_dim = 64;
    c.vae.ch = 32;  // GroupNorm's 32 groups
    c.vae.ch_mult = {1, 2, 2, 2};
    c.text.width = 64;
    c.text.layers = 2;
    c.vision.width = 80;  // one 80-wide head, as ViT-H/14's
    c.vision.layers = 2;
    c.vision.embed_dim = 1024;  // unclip-h's embedding width: the loader tells the variant by the ADM width
    c.unet.adm_in_channels = 2 * c.vision.embed_dim;
    return c;
}

}  // namespace unclip::io
