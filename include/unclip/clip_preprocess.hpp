#pragma once
// Turns an image into the CLIP vision tower's input: resize, centre crop, 1/255 scaling and the
// OpenAI CLIP mean/std normalisation, as ComfyUI (the default) or diffusers does it.
//
// ClipResize::comfyui, ComfyUI comfy/clip_vision.py clip_preprocess (CLIPVisionEncode): the RGB
// image as float32 in [0, 1]; unless it already is size x size, resized with PyTorch's
// antialiased bicubic (a = -0.5, width pass then height pass, float32) so that the short side
// becomes size (long side round(long * size / short), Python rounding), or to size x size when
// crop is false; centre crop; rounded to 1/255 steps; normalised.
//
// ClipResize::diffusers, transformers' CLIPImageProcessor with PIL (the pre-5.0 default and
// CLIPImageProcessorPil): short side to size with the long side truncated to
// int(size * long / short), PIL's 8-bit bicubic resampling (fixed-point, a rounding to 8 bits after
// each pass), centre crop, x 1/255, normalised.
//
// Alpha: ComfyUI's LoadImage drops it (PIL convert("RGB")); transformers composites the image
// over white first (convert_to_rgb). Grey is replicated to RGB. Crop offsets are (resized - size) // 2.
#include <array>

#include "unclip/image.hpp"
#include "unclip/tensor.hpp"

namespace unclip {

enum class ClipResize { comfyui, diffusers };

struct ClipPreprocessOptions {
    ClipResize method = ClipResize::comfyui;
    int size = 224;    // output side in pixels, >= 1
    bool crop = true;  // ComfyUI only: false = stretch to size x size (CLIPVisionEncode crop="none")
    std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
};

// Writes the normalised [3, size, size] planes to `out` (3 * size * size floats, caller-owned).
// Throws Error(Status::invalid_argument) for an empty image or bad options.
UNCLIP_CXX_API void clip_preprocess(const Image& image, const ClipPreprocessOptions& options, float* out);
// The same as a new [1, 3, size, size] f32 tensor.
UNCLIP_CXX_API Tensor clip_preprocess(const Image& image, const ClipPreprocessOptions& options = {});

}  // namespace unclip
