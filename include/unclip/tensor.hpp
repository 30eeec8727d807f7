#pragma once
// A small tensor: dtype, shape and strides up to 4-D, a device tag, and storage that is either
// owned (64-byte aligned) or borrowed from someone who keeps it alive (a mapped checkpoint, a
// device weight buffer). Copies of a Tensor share storage; clone() copies the data.
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>

#include "unclip/detail/export.hpp"
#include "unclip/dtype.hpp"
#include "unclip/error.hpp"

namespace unclip {

enum class Device : std::uint8_t { cpu, cuda };
constexpr const char* device_name(Device device) noexcept { return device == Device::cpu ? "cpu" : "cuda"; }

inline constexpr int kMaxRank = 4;
inline constexpr std::size_t kTensorAlignment = 64;

// Sizes of up to kMaxRank dimensions; rank 0 is a scalar with one element.
class UNCLIP_CXX_API Shape {
public:
    Shape() = default;
    // Throws Error(Status::invalid_argument) for more than kMaxRank dimensions or a negative size.
    Shape(std::initializer_list<std::int64_t> dims);
    template <class It> static Shape from_range(It first, It last) {
        Shape shape;
        for (; first != last; ++first) shape.push_back(static_cast<std::int64_t>(*first));
        return shape;
    }
    void push_back(std::int64_t dim);

    int rank() const noexcept { return rank_; }
    std::int64_t operator[](int axis) const noexcept { return dims_[static_cast<std::size_t>(axis)]; }
    // Element count; throws Error(Status::invalid_argument) if it overflows int64.
    std::int64_t numel() const;
    const std::int64_t* begin() const noexcept { return dims_.data(); }
    const std::int64_t* end() const noexcept { return dims_.data() + rank_; }
    std::string str() const;  // "[2, 4, 8, 8]"

    friend bool operator==(const Shape& a, const Shape& b) noexcept {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)]) return false;
        return true;
    }
    friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

private:
    std::array<std::int64_t, kMaxRank> dims_{};
    int rank_ = 0;
};

// Strides in elements, one per dimension.
using Strides = std::array<std::int64_t, kMaxRank>;
UNCLIP_CXX_API Strides contiguous_strides(const Shape& shape) noexcept;

class UNCLIP_CXX_API Tensor {
public:
    Tensor() = default;  // undefined: no storage, rank 0, defined() == false

    // Owned, uninitialised storage. CUDA storage needs a CUDA build and a device; otherwise
    // throws Error(Status::device). Throws Error(Status::out_of_memory) when allocation fails.
    static Tensor empty(DType dtype, const Shape& shape, Device device = Device::cpu);
    static Tensor zeros(DType dtype, const Shape& shape, Device device = Device::cpu);
    // A view of memory owned elsewhere; `keep_alive` (may be null) is held as long as any view
    // exists. Strides are contiguous unless given.
    static Tensor borrow(void* data, DType dtype, const Shape& shape, std::shared_ptr<const void> keep_alive,
                         Device device = Device::cpu);
    static Tensor borrow(void* data, DType dtype, const Shape& shape, const Strides& strides,
                         std::shared_ptr<const void> keep_alive, Device device = Device::cpu);

    bool defined() const noexcept { return defined_; }
    DType dtype() const noexcept { return dtype_; }
    const Shape& shape() const noexcept { return shape_; }
    const Strides& strides() const noexcept { return strides_; }
    Device device() const noexcept { return device_; }
    int rank() const noexcept { return shape_.rank(); }
    std::int64_t dim(int axis) const noexcept { return shape_[axis]; }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
    bool is_contiguous() const noexcept;
    // True when this tensor allocated its storage (as opposed to borrowing it).
    bool owns_storage() const noexcept { return owned_; }

    void* raw_data() const noexcept { return data_; }
    // Typed access; throws Error(Status::invalid_argument) if T does not match dtype().
    template <class T> T* data() const {
        check_access(dtype_of<std::remove_const_t<T>>);
        return static_cast<T*>(data_);
    }

    // Same storage, new shape; needs a contiguous tensor and the same element count.
    Tensor reshape(const Shape& shape) const;
    // Elements [begin, end) of one axis, sharing storage.
    Tensor slice(int axis, std::int64_t begin, std::int64_t end) const;
    // Contiguous copy in owned storage (also for contiguous tensors).
    Tensor clone() const;
    // This tensor if contiguous, else a contiguous copy.
    Tensor contiguous() const;
    // A contiguous copy converted to another dtype (or the same). CPU tensors only.
    Tensor to(DType dtype) const;
    // A copy on another device (host <-> CUDA); throws Error(Status::device) without CUDA.
    Tensor to(Device device) const;

private:
    void check_access(DType requested) const;

    std::shared_ptr<const void> storage_;
    void* data_ = nullptr;
    Shape shape_;
    Strides strides_{};
    DType dtype_ = DType::f32;
    Device device_ = Device::cpu;
    bool owned_ = false;
    bool defined_ = false;
};

// Contiguous, typed views for module code: a pointer and a shape, nothing owned.
template <class T>
struct View {
    T* data = nullptr;
    Shape shape;
    std::int64_t numel() const { return shape.numel(); }
    operator View<const T>() const noexcept { return {data, shape}; }
};
template <class T> using CView = View<const T>;

// A contiguous view of a tensor's data; throws Error(Status::invalid_argument) on a dtype mismatch
// or a non-contiguous tensor.
template <class T>
View<T> view_of(const Tensor& tensor) {
    if (!tensor.is_contiguous())
        throw Error(Status::invalid_argument, "view_of: tensor " + tensor.shape().str() + " is not contiguous");
    return {tensor.data<std::remove_const_t<T>>(), tensor.shape()};
}

}  // namespace unclip
