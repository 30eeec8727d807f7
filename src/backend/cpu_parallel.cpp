// The CPU context's worker pool. Workers sleep on a condition variable between jobs; a job is a
// range cut into pieces that threads claim through one atomic counter, the caller included.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "unclip/backend/cpu.hpp"
#include "unclip/error.hpp"

namespace unclip {
namespace detail {

class ThreadPool {
public:
    explicit ThreadPool(int threads) : threads_(std::max(1, threads)) {
        try {
            for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { work(); });
        } catch (const std::system_error& e) {
            stop();  // the destructor does not run for a half-built pool
            throw Error(Status::out_of_memory, "cpu: cannot start " + std::to_string(threads_ - 1) +
                                                   " worker threads (" + e.what() + ")");
        }
    }
    ~ThreadPool() { stop(); }
    int threads() const noexcept { return threads_; }

    void stop() noexcept {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
        workers_.clear();
    }

    void run(std::int64_t pieces, const std::function<void(std::int64_t)>& piece) {
        if (pieces <= 0) return;
        if (threads_ == 1 || pieces == 1) {
            for (std::int64_t i = 0; i < pieces; ++i) piece(i);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &piece;
            pieces_ = pieces;
            next_.store(0);
            active_ = static_cast<int>(workers_.size());
            error_ = nullptr;
            ++generation_;
        }
        wake_.notify_all();
        claim_pieces();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return active_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    void claim_pieces() {
        for (;;) {
            const std::int64_t i = next_.fetch_add(1);
            if (i >= pieces_) return;
            try {
                (*job_)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
                next_.store(pieces_);
            }
        }
    }

    void work() {
        std::uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
                if (stopping_) return;
                seen = generation_;
            }
            claim_pieces();
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (--active_ == 0) done_.notify_one();
            }
        }
    }

    const int threads_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(std::int64_t)>* job_ = nullptr;
    std::int64_t pieces_ = 0;
    std::atomic<std::int64_t> next_{0};
    int active_ = 0;
    std::uint64_t generation_ = 0;
    bool stopping_ = false;
    std::exception_ptr error_;
};

}  // namespace detail

CpuBackend::Context::Context(int threads) {
    if (threads > kMaxCpuThreads)
        throw Error(Status::invalid_argument, "cpu: " + std::to_string(threads) + " threads requested, at most " +
                                                  std::to_string(kMaxCpuThreads) + " are supported");
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    pool_ = std::make_unique<detail::ThreadPool>(threads);
}
CpuBackend::Context::~Context() = default;
CpuBackend::Context::Context(Context&&) noexcept = default;
CpuBackend::Context& CpuBackend::Context::operator=(Context&&) noexcept = default;

int CpuBackend::Context::threads() const noexcept { return pool_->threads(); }

void CpuBackend::Context::parallel_for(std::int64_t n, std::int64_t grain,
                                       const std::function<void(std::int64_t, std::int64_t)>& fn) const {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(1, grain);
    const std::int64_t pieces = (n + grain - 1) / grain;
    pool_->run(pieces, [&](std::int64_t piece) { fn(piece * grain, std::min(n, (piece + 1) * grain)); });
}

}  // namespace unclip
