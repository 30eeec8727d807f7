#pragma once
// unclip::Pipeline: image variations with SD 2.1 unCLIP from a checkpoint file or folder.
//
//   unclip::PipelineOptions options;
//   options.model_path = "sd21-unclip-h.ckpt";
//   unclip::Pipeline pipeline(options);
//   unclip::GenerateParams params;
//   params.images.push_back({unclip::load_image("cat.png")});
//   params.seed = 42;
//   std::vector<unclip::Image> images = pipeline.generate(params);
//
// Thread-safety: a Pipeline's const members and generate() may be called from several threads at
// once; calls are serialised by an internal mutex (the modules share one scratch arena), and
// cancel() may be called from any thread at any time.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "unclip/clip_preprocess.hpp"
#include "unclip/detail/export.hpp"
#include "unclip/image.hpp"
#include "unclip/io/model_config.hpp"
#include "unclip/tensor.hpp"

namespace unclip {

// Where the modules run. automatic: CUDA when this build has it and a GPU is usable, else the CPU.
enum class ComputeDevice { cpu, cuda, automatic };
UNCLIP_CXX_API const char* compute_device_name(ComputeDevice device) noexcept;  // "cpu", "cuda", "auto"

struct PipelineOptions {
    std::string model_path;         // .safetensors / .ckpt single file, or a diffusers folder
    std::string clip_vision_path;   // optional separate CLIP vision file (replaces the checkpoint's)
    // Optional separate component files, as ComfyUI's UNETLoader / VAELoader / CLIPLoader take
    // them (LDM keys with or without their prefix, or diffusers unet/ vae/ text_encoder/ folders
    // or weight files; see io::load_component). Empty: from model_path. A given file replaces
    // that component of model_path and must match its architecture; model_path must still hold
    // all three. model_path may be empty when unet_path is given: the UNet then decides the
    // variant, vae_path and text_encoder_path are required, and pictures as conditioning need
    // clip_vision_path (image embeddings work without).
    std::string unet_path, vae_path, text_encoder_path;
    int threads = 0;                // CPU threads; 0 = one per hardware thread
    // cuda: the UNet, VAE and both CLIP towers run on GPU `cuda_device` with fp16 weights (bf16
    // when the file stores bf16) uploaded once; Error(Status::device) naming the reason when no
    // GPU is usable. The prior, tokenizer and samplers' arithmetic stay on the CPU.
    ComputeDevice device = ComputeDevice::cpu;
    int cuda_device = 0;
    // Give the CLIP towers' memory-mapped weights back to the system after each encoding (they are
    // read from the file again when next needed): lower peak memory for a slower next encode.
    bool low_memory = false;
    // CPU GEMMs (linear layers, convolutions, attention's products) with bf16 inputs and fp32 sums
    // where the CPU has AVX-512 BF16 (CpuBackend::has_bf16_gemm): about 1.7x faster UNet steps,
    // relative error of about 1e-2 instead of 1e-6. Ignored (fp32) on other CPUs. On a GPU:
    // fp32 weight files are uploaded as bf16 instead of fp16.
    bool bf16_gemm = false;
    std::optional<io::Prediction> prediction;  // override the detected v / eps prediction
    bool allow_reduced = false;     // accept architectures smaller than the official ones (tests)
    // Resource caps, refused before anything is allocated: generated images (GenerateParams
    // width x height, or an init image's size) larger than output_limits (latents are 1/8 of that
    // per side) with Status::bad_image, prompts or negative prompts longer than max_prompt_bytes
    // (UTF-8 bytes; 64 KiB is about 15,000 tokens, 200 chunks of 77) with invalid_argument.
    ImageLimits output_limits{4096, 4096LL * 4096};
    std::size_t max_prompt_bytes = 64 * 1024;
    ImageLimits image_limits;       // inputs larger than this are refused before decoding
    // A folder with the text-to-image-embedding prior (prior/, prior_text_encoder/,
    // prior_tokenizer/, prior_scheduler/; see io::load_prior), e.g. the Stable unCLIP-L small
    // repo. Empty: model_path's own prior/ when it is such a folder, else none.
    std::string prior_path;
};

// The prior's sampling knobs, diffusers StableUnCLIPPipeline's prior_* arguments.
struct PriorParams {
    int steps = 25;                // prior_num_inference_steps
    float guidance_scale = 4.0f;   // prior_guidance_scale against the empty prompt; [0, 100], off at <= 1
    std::uint64_t seed = 0;        // torch.Generator().manual_seed(seed) draws the prior's noise
};

// The text conditioning of one prompt: ComfyUI's chunked, weighted encoding.
struct TextEncoding {
    Tensor context;  // [1, 77 * chunks, 1024] f32
    Tensor pooled;   // [1, 1024] projected text embedding (undefined when the model has no projection)
};

// One unCLIP conditioning input: a picture (encoded with the model's vision tower) or an image
// embedding computed before (encode_image, blends, edits), with ComfyUI's unCLIPConditioning knobs.
struct UnclipConditioning {
    std::optional<Image> image;
    std::vector<float> embedding;    // used when image is empty: the model's embedding width
    float strength = 1.0f;           // [-10, 10], ComfyUI's range
    float noise_augmentation = 0.0f; // [0, 1]; level round(999 x)
};

struct Progress {
    int step = 0, steps = 0;  // step counts from 1
    float sigma = 0.0f;
    // With GenerateParams::preview: the current denoised estimate as 8-bit RGB at latent size
    // (width/8 x height/8), from a linear latent-to-RGB map; empty otherwise.
    const Image* preview = nullptr;
};
// Return false to cancel: generate() then throws Error(Status::cancelled) within one step.
using ProgressCallback = std::function<bool(const Progress&)>;

struct GenerateParams {
    std::vector<UnclipConditioning> images;  // may be empty: text only
    std::string prompt;                      // ComfyUI syntax: (word:1.2), (word), \( escapes
    std::string negative_prompt;
    int steps = 20;                          // 1 .. 1000
    float cfg_scale = 8.0f;                  // >= 0; ComfyUI KSampler's default
    std::string sampler = "euler";           // ComfyUI names: euler, euler_ancestral, heun, dpm_2, ...
    std::string scheduler = "normal";        // normal, karras, exponential, simple, sgm_uniform, ddim_uniform
    std::uint64_t seed = 0;
    int width = 768, height = 768;           // multiples of 8
    int batch_count = 1;                     // images generated (seeds seed, seed + 1, ...)
    std::optional<Image> init_image;         // img2img source (resized to width x height)
    float denoise = 1.0f;                    // (0, 1]: with init_image, how much is repainted
    std::optional<Image> mask;               // with init_image: white (or 1 - alpha) = repaint
    ProgressCallback on_progress;
    bool preview = false;
    // VAE decode in tiles of this many pixels (multiple of 8, > vae_tile_overlap); 0 = whole image
    // unless it would need more than 2 GiB of activations, then 512-pixel tiles.
    int vae_tile = 0;
    int vae_tile_overlap = 64;               // pixels, multiple of 8
};

class UNCLIP_CXX_API Pipeline {
public:
    // Loads and validates the model. Throws Error(Status::io / bad_model / invalid_argument)
    // naming the file and the culprit.
    explicit Pipeline(const PipelineOptions& options);
    ~Pipeline();
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;

    const io::ModelConfig& model_config() const noexcept;
    // The device the modules run on (never automatic) and, for cuda, the GPU's description and
    // what its convolutions run on (CudaBackend::Context::convolution_path).
    ComputeDevice device() const noexcept;
    std::string device_description() const;
    // Width of the image embeddings this model is conditioned on (1024 for -h, 768 for -l).
    int embedding_dim() const noexcept;

    // The projected CLIP image embedding of a picture; cached by pixel content and options.
    std::vector<float> encode_image(const Image& image, const ClipPreprocessOptions& options = {});
    TextEncoding encode_text(const std::string& prompt);
    // image_embedding + scale * (pooled(to) - pooled(from)): moves an image embedding along a text
    // direction ("a photo of a dog" -> "a photo of a cat"), with the projected text embeddings of the
    // model's own text tower. Needs a text projection as wide as the image embeddings (unclip-h:
    // both 1024); unclip-l's 768-wide embeddings use the prior's CLIP ViT-L/14 text tower when a
    // prior is loaded and are refused with Status::invalid_argument otherwise.
    std::vector<float> add_text_direction(const std::vector<float>& image_embedding, const std::string& from,
                                          const std::string& to, float scale = 1.0f);
    // True when a prior was loaded (PipelineOptions::prior_path or the model folder's prior/).
    bool has_prior() const noexcept;
    // Text -> image embedding through the prior, as StableUnCLIPPipeline (spec §9): the prior
    // tokenizer and CLIPTextModelWithProjection, the prior's denoising loop with guidance, then
    // post_process_latents. Returns embedding_dim() floats, usable as UnclipConditioning::embedding.
    // Throws Error(Status::invalid_argument) without a prior, for bad params or when the prior's
    // width differs from the model's embeddings; Error(Status::cancelled) after cancel().
    std::vector<float> prior_embedding(const std::string& prompt, const PriorParams& params = {});
    // An APPROXIMATE image embedding for models without a prior (unclip-h): the projected CLIP text
    // embedding of `prompt` rescaled to norm `target_norm` (> 0), or, with 0, to the norm of the
    // model's own embedding of a mid-grey picture (needs the vision tower). Text and image
    // embeddings of CLIP share directions only roughly (contrastive training aligns them up to a
    // gap), so this is not what a trained prior would predict: no reference implementation
    // conditions unCLIP this way, and results follow the text less faithfully. Throws
    // Error(Status::invalid_argument) when no text tower projects to embedding_dim() values.
    std::vector<float> text_image_embedding(const std::string& prompt, float target_norm = 0.0f);
    // DALL-E 2 text-diff edit (§3): text_diff_embedding(image_embedding, t(from), t(to), alpha,
    // theta) with the projected text embeddings of the tower add_text_direction uses.
    std::vector<float> text_diff_edit(const std::vector<float>& image_embedding, const std::string& from,
                                      const std::string& to, float alpha = 1.0f, float theta = 0.5f);
    // The images of one run; throws Error(Status::cancelled) when on_progress returns false or
    // cancel() is called, Error(Status::invalid_argument) naming the bad parameter.
    std::vector<Image> generate(const GenerateParams& params);
    // Asks a running generate() to stop within one step; harmless when none runs.
    void cancel() noexcept;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

// Embedding arithmetic (DALL-E 2 style edits and blends); all throw Error(Status::invalid_argument)
// for empty or mismatched inputs and non-finite values.
// sum_i weights[i] * embeddings[i].
UNCLIP_CXX_API std::vector<float> mix_embeddings(const std::vector<std::vector<float>>& embeddings,
                                                 const std::vector<float>& weights);
// Spherical interpolation from a (t = 0) to b (t = 1), magnitudes interpolated linearly.
UNCLIP_CXX_API std::vector<float> slerp_embeddings(const std::vector<float>& a, const std::vector<float>& b, float t);
// Spherical blend of several embeddings with non-negative weights (not all zero): a running
// slerp, b_1 = e_1, b_k = slerp(b_{k-1}, e_k, w_k / (w_1 + ... + w_k)), so two inputs give
// slerp_embeddings(e_1, e_2, w_2 / (w_1 + w_2)) and equal weights treat every input alike in
// magnitude. Zero-weight inputs are skipped.
UNCLIP_CXX_API std::vector<float> blend_embeddings(const std::vector<std::vector<float>>& embeddings,
                                                   const std::vector<float>& weights);
// DALL-E 2 text-diff (section 3): with d = image + alpha (target_text - source_text) rescaled to
// the image embedding's norm (for DALL-E 2's unit-norm CLIP embeddings, the paper's
// normalisation), returns slerp_embeddings(image, d, theta). theta in [0, 1]: 0 returns the image
// embedding, 1 the edited direction. Throws for NaN/inf alpha or theta, theta outside [0, 1],
// mismatched sizes, or a zero image embedding or d.
UNCLIP_CXX_API std::vector<float> text_diff_embedding(const std::vector<float>& image_embedding,
                                                      const std::vector<float>& source_text,
                                                      const std::vector<float>& target_text, float alpha, float theta);

}  // namespace unclip
