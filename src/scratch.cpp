#include "unclip/scratch.hpp"

#include <new>
#include <string>

#include "unclip/backend/cuda.hpp"

namespace unclip {

void Scratch::Free::operator()(std::byte* p) const noexcept {
    if (device == Device::cuda) cuda::deallocate(p);
    else ::operator delete(p, std::align_val_t{kAlignment});
}

void Scratch::reserve(std::size_t bytes) {
    if (bytes <= capacity_) return;
    if (used_ != 0) throw Error(Status::internal, "scratch: cannot grow while buffers are taken");
    bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    // The old buffer goes first (GPU memory may not hold both); a failed allocation below then
    // leaves an empty arena, never a stale capacity.
    buffer_.reset();
    capacity_ = 0;
    std::byte* p = nullptr;
    if (device_ == Device::cuda) {
        p = static_cast<std::byte*>(cuda::allocate(bytes));
    } else {
        p = static_cast<std::byte*>(::operator new(bytes, std::align_val_t{kAlignment}, std::nothrow));
    }
    if (!p) throw Error(Status::out_of_memory, "scratch: cannot allocate " + std::to_string(bytes) + " bytes");
    buffer_ = std::unique_ptr<std::byte, Free>(p, Free{device_});
    capacity_ = bytes;
}

void* Scratch::take_bytes(std::size_t bytes) {
    if (bytes > capacity_ - used_)
        throw Error(Status::internal, "scratch: " + std::to_string(bytes) + " bytes requested, " +
                                          std::to_string(capacity_ - used_) + " of " + std::to_string(capacity_) +
                                          " left (a module under-reported scratch_bytes)");
    void* p = buffer_.get() + used_;
    used_ += bytes;
    return p;
}

}  // namespace unclip
