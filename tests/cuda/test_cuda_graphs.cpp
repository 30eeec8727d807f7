// CUDA graphs: a recording replays the kernels it holds on whatever its buffers hold at launch,
// refuses what it cannot hold, and the pipeline's UNet steps give the same numbers with and without.
#include <cstdlib>
#include <string>

#include "cuda_test_support.hpp"
#include "fixture_configs.hpp"
#include "pipeline/pipeline_gpu.hpp"
#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;
using cuda_test::DeviceFloats;
using cuda_test::ScopedEnvironment;

namespace {

std::vector<float> silu_then_gelu(const CudaBackend::Context& ctx, const std::vector<float>& x) {
    const DeviceFloats in(ctx, x), mid(static_cast<std::int64_t>(x.size())), out(static_cast<std::int64_t>(x.size()));
    CudaBackend::silu(ctx, in.get(), mid.get(), in.size());
    CudaBackend::gelu(ctx, mid.get(), out.get(), in.size());
    return out.read(ctx);
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("a recorded graph runs on the values its buffers hold at each launch") {
    CudaBackend::Context ctx;
    const std::int64_t n = 10007;  // not a multiple of the kernels' vector width
    const DeviceFloats in(n), mid(n), out(n);
    // Both kernels run once first, as the pipeline runs a step before recording: a driver that
    // loads modules lazily may refuse to load one inside a recording.
    silu_then_gelu(ctx, std::vector<float>(16, 1.0f));
    const CudaBackend::Graph graph = CudaBackend::Graph::record(ctx, [&] {
        CudaBackend::silu(ctx, in.get(), mid.get(), n);
        CudaBackend::gelu(ctx, mid.get(), out.get(), n);
    });
    CHECK(graph.operations() == 2);
    CHECK(graph.current(ctx));
    // Recording ran nothing: the output still holds its poison.
    CHECK_FALSE(cuda_test::all_finite(out.read(ctx)));
    for (std::uint32_t seed : {1u, 2u, 3u}) {
        const std::vector<float> x = cuda_test::random_floats(static_cast<std::size_t>(n), seed, -4.0f, 4.0f);
        CudaBackend::upload(ctx, x.data(), in.get(), n);
        graph.launch(ctx);
        CHECK(out.read(ctx) == silu_then_gelu(ctx, x));  // the same kernels: the same bits
    }
}

TEST_CASE("a recording refuses a call that waits or allocates, by name, and the context goes on working") {
    CudaBackend::Context ctx;
    const std::int64_t n = 256;
    const DeviceFloats in(ctx, cuda_test::random_floats(n, 4)), out(n);
    CudaBackend::silu(ctx, in.get(), out.get(), n);  // loaded before recording, as in the first test
    CHECK_THROWS_STATUS(CudaBackend::Graph::record(ctx, [&] {
        CudaBackend::silu(ctx, in.get(), out.get(), n);
        ctx.synchronize();
    }), Status::device, "cudaStreamSynchronize");
    // Growing the workspace waits for the stream and allocates.
    CHECK_THROWS_STATUS(CudaBackend::Graph::record(ctx, [&] { ctx.reserve_workspace(ctx.workspace_bytes() + (1u << 20)); }),
                        Status::device, "CUDA graph: recording failed");
    // Whatever `queue` throws comes back as a device error naming it.
    CHECK_THROWS_STATUS(CudaBackend::Graph::record(ctx, [] { throw Error(Status::invalid_argument, "queue's own error"); }),
                        Status::device, "queue's own error");
    CudaBackend::silu(ctx, in.get(), out.get(), n);
    const std::vector<float> x = cuda_test::random_floats(n, 4);
    std::vector<float> expected(x.size());
    CpuBackend::silu(CpuBackend::Context(1), x.data(), expected.data(), n);
    CHECK(cuda_test::relative_l2(out.read(ctx), expected) < 1e-6);

    CHECK_THROWS_STATUS(CudaBackend::Graph().launch(ctx), Status::invalid_argument, "empty graph");
    const CudaBackend::Graph graph = CudaBackend::Graph::record(ctx, [&] { CudaBackend::silu(ctx, in.get(), out.get(), n); });
    const CudaBackend::Context other;
    CHECK_THROWS_STATUS(graph.launch(other), Status::invalid_argument, "other than the one it was recorded on");
}

TEST_CASE("a UNet recorded after its timestep embedding replays each step as the eager forward computes it") {
    const test::Fixture fx("unet/unet_tiny_adm.safetensors");
    const auto cfg = test::unet_config(fx.config());
    const nn::WeightMap host = fx.weights("unet.");
    const nn::UNet<CpuBackend, float> cpu_unet(cfg, nn::load_unet<float>(host, "", cfg));  // marks what the UNet takes
    const nn::WeightMap device = nn::upload_weights(host);
    const nn::UNet<CudaBackend, float> unet(cfg, nn::load_unet<float>(device, "", cfg));
    const Tensor x = fx["a.x"], context = fx["a.context"], y = fx["a.y"];
    const Shape shape = x.shape();
    const std::int64_t batch = shape[0], ted = cfg.time_embed_dim();
    CudaBackend::Context ctx;
    const DeviceFloats dx(ctx, std::vector<float>(x.data<const float>(), x.data<const float>() + x.numel())),
        dcontext(ctx, std::vector<float>(context.data<const float>(), context.data<const float>() + context.numel())),
        dy(ctx, std::vector<float>(y.data<const float>(), y.data<const float>() + y.numel())), emb(batch * ted);
    DeviceFloats out(shape.numel());
    Scratch scratch(Device::cuda, unet.scratch_bytes(shape, context.dim(1)));
    const CView<float> x_view{dx.get(), shape}, context_view{dcontext.get(), context.shape()};
    const View<float> out_view{out.get(), shape};
    const View<float> emb_view{emb.get(), {batch, ted}};

    // Eager steps: three latents at three timesteps.
    const std::vector<float> timesteps{999.0f, 500.0f, 3.0f};
    std::vector<std::vector<float>> latents, expected;
    for (std::size_t i = 0; i < timesteps.size(); ++i) {
        latents.push_back(cuda_test::random_floats(static_cast<std::size_t>(shape.numel()), 10 + static_cast<std::uint32_t>(i)));
        CudaBackend::upload(ctx, latents[i].data(), dx.get(), shape.numel());
        const std::vector<float> t(static_cast<std::size_t>(batch), timesteps[i]);
        unet.forward(ctx, x_view, t.data(), context_view, dy.get(), out_view, scratch);
        expected.push_back(out.read(ctx));
    }
    // The golden case through the split forward, which the recording holds.
    CudaBackend::upload(ctx, x.data<const float>(), dx.get(), shape.numel());
    unet.embed(ctx, fx["a.t"].data<const float>(), dy.get(), emb_view, scratch);
    unet.forward_embedded(ctx, x_view, emb_view, context_view, out_view, scratch);
    Tensor golden = Tensor::empty(DType::f32, shape);
    CudaBackend::download(ctx, out.get(), golden.data<float>(), shape.numel());
    CHECK_CLOSE(golden, fx["a.expected"], cuda_test::kHalfTolerance);
    // The cross-attention keys and values projected once give the same numbers.
    const DeviceFloats kv(unet.context_kv_floats(batch, context.dim(1)));
    unet.project_context(ctx, context_view, kv.get());
    out.poison();
    unet.forward_embedded(ctx, x_view, emb_view, context_view, out_view, scratch, kv.get(), batch);
    CHECK(cuda_test::relative_l2(out.read(ctx), std::vector<float>(golden.data<const float>(),
                                                                    golden.data<const float>() + golden.numel())) < 1e-6);

    const CudaBackend::Graph graph =
        CudaBackend::Graph::record(ctx, [&] { unet.forward_embedded(ctx, x_view, emb_view, context_view, out_view, scratch); });
    MESSAGE("recorded " << graph.operations() << " operations");
    CHECK(graph.operations() > 20);
    for (std::size_t i = 0; i < timesteps.size(); ++i) {
        INFO("timestep " << timesteps[i]);
        out.poison();
        CudaBackend::upload(ctx, latents[i].data(), dx.get(), shape.numel());
        const std::vector<float> t(static_cast<std::size_t>(batch), timesteps[i]);
        unet.embed(ctx, t.data(), dy.get(), emb_view, scratch);
        graph.launch(ctx);
        const std::vector<float> got = out.read(ctx);
        REQUIRE(cuda_test::all_finite(got));
        CHECK(cuda_test::relative_l2(got, expected[i]) < 1e-6);
    }
}

TEST_CASE("the pipeline's UNet steps launch a graph from the second call, keep it for the next loop, and match the steps without one") {
    PipelineOptions options;
    options.model_path = test::tiny_model_path();
    io::LoadOptions load;
    load.allow_reduced = true;
    const auto models = pipeline::load_models(options.model_path, load);
    const auto gpu = pipeline::load_gpu_models(*models, 0, false);
    const auto& cfg = gpu->unet->config();
    const std::int64_t batch = 1, tokens = 77, h = 6, w = 8, row_size = 4 * h * w;
    Tensor contexts = Tensor::empty(DType::f32, {2 * batch, tokens, cfg.context_dim});
    Tensor ys = Tensor::empty(DType::f32, {2 * batch, std::max<std::int64_t>(cfg.adm_in_channels, 1)});
    const auto fill = [](Tensor& t, std::uint32_t seed) {
        const auto v = cuda_test::random_floats(static_cast<std::size_t>(t.numel()), seed);
        std::copy(v.begin(), v.end(), t.data<float>());
    };
    fill(contexts, 20);
    fill(ys, 21);

    const auto run_steps = [&](bool graphs, std::size_t expected_launches) {
        gpu->ctx.set_graphs(graphs);
        pipeline::GpuUNetSteps steps(*gpu, contexts, ys, Shape{batch, 4, h, w});
        std::vector<std::vector<float>> outputs;
        for (int i = 0; i < 4; ++i) {
            const std::vector<float> input = cuda_test::random_floats(static_cast<std::size_t>(2 * row_size), 30 + i);
            std::vector<float> output(input.size(), std::nanf(""));
            sampling::ModelCall call;
            call.input = input.data();
            call.output = output.data();
            call.rows = 2 * batch;
            call.positive_rows = batch;
            call.row_size = row_size;
            call.timestep = 900.0f - 250.0f * static_cast<float>(i);
            steps(call);
            outputs.push_back(output);
        }
        CHECK(steps.graph_error() == "");
        CHECK(steps.graph_launches() == expected_launches);
        return outputs;
    };
    const auto recorded = run_steps(true, 3);
    const auto eager = run_steps(false, 0);
    // A second loop on the same buffers launches the kept graph from its first call.
    const auto kept = run_steps(true, 4);
    for (std::size_t i = 0; i < eager.size(); ++i) {
        INFO("call " << i);
        REQUIRE(cuda_test::all_finite(recorded[i]));
        REQUIRE(cuda_test::all_finite(kept[i]));
        CHECK(cuda_test::relative_l2(recorded[i], eager[i]) < 1e-6);
        CHECK(cuda_test::relative_l2(kept[i], eager[i]) < 1e-6);
        if (i > 0) CHECK(cuda_test::relative_l2(eager[i], eager[i - 1]) > 1e-3);  // each step computes anew
    }
    // A grown workspace is new memory: the kept graph is no longer current, and the next loop
    // records again at its second call.
    gpu->ctx.reserve_workspace(gpu->ctx.workspace_bytes() + (1u << 20));
    CHECK_FALSE(gpu->unet_graph.current(gpu->ctx));
    const auto rerecorded = run_steps(true, 3);
    CHECK(cuda_test::relative_l2(rerecorded[3], eager[3]) < 1e-6);
}

TEST_CASE("end to end: UNCLIP_CUDA_GRAPHS=0 gives the same image") {
    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    o.device = ComputeDevice::cuda;
    GenerateParams p;
    p.width = 64;
    p.height = 48;
    p.steps = 5;
    p.seed = 9;
    p.prompt = "a lighthouse";
    p.images.push_back({std::nullopt, std::vector<float>(static_cast<std::size_t>(Pipeline(o).embedding_dim()), 0.25f), 1.0f, 0.0f});
    std::vector<Image> with_graphs;
    {
        const ScopedEnvironment on("UNCLIP_CUDA_GRAPHS", "1");  // whatever the caller's environment says
        with_graphs = Pipeline(o).generate(p);
    }
    std::vector<Image> without;
    {
        const ScopedEnvironment off("UNCLIP_CUDA_GRAPHS", "0");
        without = Pipeline(o).generate(p);
    }
    REQUIRE(with_graphs.size() == without.size());
    CHECK(with_graphs[0].pixels == without[0].pixels);
}

}  // TEST_SUITE
