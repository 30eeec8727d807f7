// unclip::Pipeline: text and image encoders, unCLIP conditioning, the sampler loop around the UNet
// and the VAE decode, with ComfyUI's semantics (spec §10.1).
#include "unclip/pipeline.hpp"

#include <cmath>
#include <mutex>
#include <new>

#include "pipeline/pipeline_impl.hpp"

namespace unclip {

Pipeline::Pipeline(const PipelineOptions& options) : impl_(std::make_unique<Impl>(options)) {
    if (options.model_path.empty() && options.unet_path.empty())
        throw Error(Status::invalid_argument, "Pipeline: model_path is empty (give a checkpoint, or unet_path, vae_path "
                                              "and text_encoder_path)");
    io::LoadOptions load;
    load.prediction = options.prediction;
    load.clip_vision_path = options.clip_vision_path;
    load.unet_path = options.unet_path;
    load.vae_path = options.vae_path;
    load.text_encoder_path = options.text_encoder_path;
    load.allow_reduced = options.allow_reduced;
    // Device requests are settled before the (possibly gigabytes of) weights are read.
    if (options.device != ComputeDevice::cpu && options.device != ComputeDevice::cuda &&
        options.device != ComputeDevice::automatic)
        throw Error(Status::invalid_argument, "Pipeline: unknown device " + std::to_string(static_cast<int>(options.device)));
    const bool gpu_usable = cuda::compiled_with_cuda() && cuda::device_count() > 0;
    if (options.device == ComputeDevice::cuda && !gpu_usable)
        throw Error(Status::device, "Pipeline: device cuda requested, but " + cuda::device_description());
    impl_->models = pipeline::load_models(options.model_path, load);
    if (options.device == ComputeDevice::cuda || (options.device == ComputeDevice::automatic && gpu_usable)) {
        impl_->gpu = pipeline::load_gpu_models(*impl_->models, options.cuda_device, options.bf16_gemm);
        // The GPU holds its own copies: the mapped file pages can go back to the system.
        for (const auto* weights : {&impl_->models->unet_weights, &impl_->models->vae_weights, &impl_->models->text_weights,
                                    &impl_->models->vision_weights})
            pipeline::release_resident_pages(*weights);
    }
    const std::string prior = !options.prior_path.empty() ? options.prior_path
                              : io::has_prior(options.model_path) ? options.model_path : std::string();
    if (!prior.empty()) impl_->prior = pipeline::load_prior_models(prior);
}

Pipeline::~Pipeline() = default;

const io::ModelConfig& Pipeline::model_config() const noexcept { return impl_->models->checkpoint.config; }

ComputeDevice Pipeline::device() const noexcept { return impl_->gpu ? ComputeDevice::cuda : ComputeDevice::cpu; }

std::string Pipeline::device_description() const {
    return impl_->gpu ? impl_->gpu->description
                      : std::string("CPU (") + std::to_string(impl_->ctx.threads()) + " threads, " + cpu_kernel_isa() + " kernels)";
}

const char* compute_device_name(ComputeDevice device) noexcept {
    switch (device) {
    case ComputeDevice::cpu: return "cpu";
    case ComputeDevice::cuda: return "cuda";
    case ComputeDevice::automatic: return "auto";
    }
    return "unknown";
}

int Pipeline::embedding_dim() const noexcept { return impl_->models->checkpoint.config.noise_aug_dim(); }

void Pipeline::cancel() noexcept { impl_->cancelled.store(true); }

std::vector<float> Pipeline::encode_image(const Image& image, const ClipPreprocessOptions& options) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return pipeline::encode_image(*impl_, image, options);
}

TextEncoding Pipeline::encode_text(const std::string& prompt) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return pipeline::encode_text(*impl_, prompt);
}

std::vector<float> Pipeline::add_text_direction(const std::vector<float>& image_embedding, const std::string& from,
                                                const std::string& to, float scale) {
    if (!std::isfinite(scale)) throw Error(Status::invalid_argument, "add_text_direction: scale is not finite");
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const std::vector<float> source = pipeline::projected_text_embedding(*impl_, from, "add_text_direction");
    const std::vector<float> target = pipeline::projected_text_embedding(*impl_, to, "add_text_direction");
    if (image_embedding.size() != source.size())
        throw Error(Status::invalid_argument, "add_text_direction: the image embedding has " +
                                                  std::to_string(image_embedding.size()) + " values, the text embedding " +
                                                  std::to_string(source.size()));
    std::vector<float> direction(image_embedding.size());
    for (std::size_t i = 0; i < direction.size(); ++i) direction[i] = target[i] - source[i];
    return mix_embeddings({image_embedding, direction}, {1.0f, scale});
}

std::vector<Image> Pipeline::generate(const GenerateParams& params) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->cancelled.store(false);
    try {
        return pipeline::generate(*impl_, params);
    } catch (const std::bad_alloc&) {  // container growth inside the run: a status like Tensor::empty's
        throw Error(Status::out_of_memory, "generate: out of memory (" + std::to_string(params.width) + "x" +
                                               std::to_string(params.height) + ", batch " +
                                               std::to_string(params.batch_count) + ")");
    }
}

}  // namespace unclip
