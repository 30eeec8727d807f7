// CudaBackend::Graph: stream capture of a sequence of backend calls, and its replay.
#include <cstdint>
#include <string>

#include "check.cuh"
#include "context.cuh"
#include "unclip/error.hpp"

namespace unclip {

struct CudaBackend::Graph::State {
    cudaGraphExec_t exec = nullptr;
    cudaStream_t stream = nullptr;      // the recording context's, checked at launch
    std::uint64_t workspace_generation = 0;  // its workspace then, which the recorded kernels use
    std::size_t operations = 0;
    ~State() {
        if (exec) cudaGraphExecDestroy(exec);
    }
};

CudaBackend::Graph::Graph() noexcept = default;
CudaBackend::Graph::~Graph() = default;
CudaBackend::Graph::Graph(Graph&&) noexcept = default;
CudaBackend::Graph& CudaBackend::Graph::operator=(Graph&&) noexcept = default;

namespace {

// Ends a capture whatever state it is in, so that the stream takes work again.
void end_abandoned_capture(cudaStream_t stream) noexcept {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
}

}  // namespace

std::size_t CudaBackend::Graph::operations() const noexcept { return state_ ? state_->operations : 0; }

CudaBackend::Graph CudaBackend::Graph::record(const Context& ctx, const std::function<void()>& queue) {
    const cudaStream_t stream = ctx.state().stream;
    // Thread-local: another thread's CUDA calls (a second pipeline) do not spoil this recording.
    UNCLIP_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
        queue();
    } catch (const std::exception& e) {
        end_abandoned_capture(stream);
        throw Error(Status::device, std::string("CUDA graph: recording failed: ") + e.what());
    } catch (...) {
        end_abandoned_capture(stream);
        throw;
    }
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
    if (ended != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        cuda::detail::throw_cuda_error("CUDA graph: cudaStreamEndCapture", ended);
    }
    Graph result;
    result.state_ = std::make_unique<State>();
    result.state_->stream = stream;
    result.state_->workspace_generation = ctx.state().workspace_generation;
    std::size_t nodes = 0;
    cudaError_t status = cudaGraphGetNodes(graph, nullptr, &nodes);
    if (status == cudaSuccess) status = cudaGraphInstantiate(&result.state_->exec, graph, 0);
    cudaGraphDestroy(graph);  // the executable graph keeps what it needs
    UNCLIP_CUDA_CHECK(status);
    result.state_->operations = nodes;
    return result;
}

bool CudaBackend::Graph::current(const Context& ctx) const noexcept {
    return state_ && ctx.state().stream == state_->stream && ctx.state().workspace_generation == state_->workspace_generation;
}

void CudaBackend::Graph::launch(const Context& ctx) const {
    if (!state_) throw Error(Status::invalid_argument, "CUDA graph: launch of an empty graph");
    if (ctx.state().stream != state_->stream)
        throw Error(Status::invalid_argument, "CUDA graph: launched on a context other than the one it was recorded on");
    if (!current(ctx))
        throw Error(Status::invalid_argument, "CUDA graph: the context's workspace grew since the recording; record again");
    UNCLIP_CUDA_CHECK(cudaGraphLaunch(state_->exec, state_->stream));
}

}  // namespace unclip
