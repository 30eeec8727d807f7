#pragma once
// Working memory for module forwards, provided by the caller so that forward() allocates nothing.
// A bump allocator: modules take aligned buffers and give them back in stack order through Frame.
#include <cstddef>
#include <memory>

#include "unclip/detail/export.hpp"
#include "unclip/error.hpp"
#include "unclip/tensor.hpp"

namespace unclip {

class UNCLIP_CXX_API Scratch {
public:
    static constexpr std::size_t kAlignment = 64;
    // Bytes that take<T>(count) consumes, alignment included; modules sum these in scratch_bytes().
    template <class T> static constexpr std::size_t bytes_for(std::size_t count) noexcept {
        return (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    }

    Scratch() = default;
    explicit Scratch(std::size_t bytes) { reserve(bytes); }
    // An arena in the memory of `device` (Device::cuda: GPU memory for CudaBackend modules, one
    // allocation that later forwards reuse).
    explicit Scratch(Device device, std::size_t bytes = 0) : device_(device) { reserve(bytes); }
    Device device() const noexcept { return device_; }
    // Grows the buffer to at least `bytes`; only while nothing is taken (else Status::internal).
    void reserve(std::size_t bytes);
    std::size_t capacity() const noexcept { return capacity_; }
    std::size_t used() const noexcept { return used_; }

    // Throws Error(Status::internal) when a module under-reported its scratch_bytes().
    template <class T> T* take(std::size_t count) { return static_cast<T*>(take_bytes(bytes_for<T>(count))); }

    // Restores the fill level on scope exit.
    class Frame {
    public:
        explicit Frame(Scratch& scratch) noexcept : scratch_(scratch), mark_(scratch.used_) {}
        ~Frame() { scratch_.used_ = mark_; }
        Frame(const Frame&) = delete;
        Frame& operator=(const Frame&) = delete;

    private:
        Scratch& scratch_;
        std::size_t mark_;
    };

private:
    void* take_bytes(std::size_t bytes);
    struct Free {
        Free() noexcept : device(Device::cpu) {}
        explicit Free(Device d) noexcept : device(d) {}
        Device device;
        void operator()(std::byte* p) const noexcept;
    };
    Device device_ = Device::cpu;
    std::unique_ptr<std::byte, Free> buffer_;
    std::size_t capacity_ = 0;
    std::size_t used_ = 0;
};

}  // namespace unclip
