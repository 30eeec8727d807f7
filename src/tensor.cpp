#include "unclip/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "unclip/backend/cuda.hpp"

namespace unclip {

Shape::Shape(std::initializer_list<std::int64_t> dims) {
    for (std::int64_t d : dims) push_back(d);
}

void Shape::push_back(std::int64_t dim) {
    if (rank_ >= kMaxRank)
        throw Error(Status::invalid_argument, "shape: more than " + std::to_string(kMaxRank) + " dimensions");
    if (dim < 0) throw Error(Status::invalid_argument, "shape: negative dimension " + std::to_string(dim));
    dims_[static_cast<std::size_t>(rank_++)] = dim;
}

std::int64_t Shape::numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) {
        if (__builtin_mul_overflow(n, dims_[static_cast<std::size_t>(i)], &n))
            throw Error(Status::invalid_argument, "shape " + str() + ": element count overflows 64 bits");
    }
    return n;
}

std::string Shape::str() const {
    std::ostringstream out;
    out << '[';
    for (int i = 0; i < rank_; ++i) out << (i ? ", " : "") << dims_[static_cast<std::size_t>(i)];
    out << ']';
    return out.str();
}

Strides contiguous_strides(const Shape& shape) noexcept {
    Strides strides{};
    std::int64_t step = 1;
    for (int i = shape.rank() - 1; i >= 0; --i) {
        strides[static_cast<std::size_t>(i)] = step;
        step *= shape[i];
    }
    return strides;
}

namespace {
std::size_t checked_bytes(DType dtype, const Shape& shape) {
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<std::size_t>(shape.numel()), dtype_size(dtype), &bytes))
        throw Error(Status::invalid_argument, "tensor " + shape.str() + ": byte size overflows");
    return bytes;
}

std::shared_ptr<void> allocate_storage(std::size_t bytes, Device device) {
    const std::size_t rounded = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
    if (device == Device::cuda) {
        void* p = cuda::allocate(rounded == 0 ? kTensorAlignment : rounded);
        return std::shared_ptr<void>(p, [](void* q) { cuda::deallocate(q); });
    }
    void* p = ::operator new(rounded == 0 ? kTensorAlignment : rounded, std::align_val_t{kTensorAlignment},
                             std::nothrow);
    if (!p) throw Error(Status::out_of_memory, "tensor: cannot allocate " + std::to_string(bytes) + " bytes");
    return std::shared_ptr<void>(p, [](void* q) { ::operator delete(q, std::align_val_t{kTensorAlignment}); });
}

// Calls fn(dst_offset, src_offset) for each element of a strided tensor in row-major order.
template <class Fn>
void for_each_offset(const Shape& shape, const Strides& strides, Fn&& fn) {
    std::array<std::int64_t, kMaxRank> index{};
    const std::int64_t n = shape.numel();
    const int rank = shape.rank();
    std::int64_t src = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        fn(i, src);
        for (int axis = rank - 1; axis >= 0; --axis) {
            const auto a = static_cast<std::size_t>(axis);
            ++index[a];
            src += strides[a];
            if (index[a] < shape[axis]) break;
            src -= strides[a] * index[a];
            index[a] = 0;
        }
    }
}
}  // namespace

Tensor Tensor::empty(DType dtype, const Shape& shape, Device device) {
    Tensor t;
    auto storage = allocate_storage(checked_bytes(dtype, shape), device);
    t.data_ = storage.get();
    t.storage_ = std::move(storage);
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    t.dtype_ = dtype;
    t.device_ = device;
    t.owned_ = true;
    t.defined_ = true;
    return t;
}

Tensor Tensor::zeros(DType dtype, const Shape& shape, Device device) {
    if (device == Device::cuda) {
        Tensor host = zeros(dtype, shape, Device::cpu);
        return host.to(Device::cuda);
    }
    Tensor t = empty(dtype, shape, device);
    std::memset(t.data_, 0, t.nbytes());
    return t;
}

Tensor Tensor::borrow(void* data, DType dtype, const Shape& shape, std::shared_ptr<const void> keep_alive,
                      Device device) {
    return borrow(data, dtype, shape, contiguous_strides(shape), std::move(keep_alive), device);
}

Tensor Tensor::borrow(void* data, DType dtype, const Shape& shape, const Strides& strides,
                      std::shared_ptr<const void> keep_alive, Device device) {
    if (!data && shape.numel() != 0) throw Error(Status::invalid_argument, "tensor: borrowing a null pointer");
    checked_bytes(dtype, shape);
    Tensor t;
    t.storage_ = std::move(keep_alive);
    t.data_ = data;
    t.shape_ = shape;
    t.strides_ = strides;
    t.dtype_ = dtype;
    t.device_ = device;
    t.defined_ = true;
    return t;
}

bool Tensor::is_contiguous() const noexcept {
    const Strides expected = contiguous_strides(shape_);
    for (int i = 0; i < shape_.rank(); ++i) {
        const auto a = static_cast<std::size_t>(i);
        if (shape_[i] != 1 && strides_[a] != expected[a]) return false;
    }
    return true;
}

void Tensor::check_access(DType requested) const {
    if (requested != dtype_)
        throw Error(Status::invalid_argument, std::string("tensor: accessed as ") + std::string(dtype_name(requested)) +
                                                  " but holds " + std::string(dtype_name(dtype_)));
}

Tensor Tensor::reshape(const Shape& shape) const {
    if (!is_contiguous()) throw Error(Status::invalid_argument, "reshape: tensor " + shape_.str() + " is not contiguous");
    if (shape.numel() != numel())
        throw Error(Status::invalid_argument, "reshape: " + shape_.str() + " has " + std::to_string(numel()) +
                                                  " elements, " + shape.str() + " needs " + std::to_string(shape.numel()));
    Tensor t = *this;
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    return t;
}

Tensor Tensor::slice(int axis, std::int64_t begin, std::int64_t end) const {
    if (axis < 0 || axis >= rank())
        throw Error(Status::invalid_argument, "slice: axis " + std::to_string(axis) + " out of range for " + shape_.str());
    if (begin < 0 || end < begin || end > shape_[axis])
        throw Error(Status::invalid_argument, "slice: [" + std::to_string(begin) + ", " + std::to_string(end) +
                                                  ") out of range for axis " + std::to_string(axis) + " of " + shape_.str());
    Tensor t = *this;
    Shape shape;
    for (int i = 0; i < rank(); ++i) shape.push_back(i == axis ? end - begin : shape_[i]);
    t.shape_ = shape;
    t.data_ = static_cast<char*>(data_) +
              begin * strides_[static_cast<std::size_t>(axis)] * static_cast<std::int64_t>(dtype_size(dtype_));
    return t;
}

Tensor Tensor::clone() const {
    if (device_ == Device::cuda) {
        Tensor t = empty(dtype_, shape_, Device::cuda);
        if (!is_contiguous()) throw Error(Status::invalid_argument, "clone: strided CUDA tensors are not supported");
        cuda::copy(t.data_, data_, nbytes(), cuda::CopyKind::device_to_device);
        return t;
    }
    Tensor t = empty(dtype_, shape_, Device::cpu);
    if (is_contiguous()) {
        if (nbytes()) std::memcpy(t.data_, data_, nbytes());
        return t;
    }
    const std::size_t size = dtype_size(dtype_);
    const auto* src = static_cast<const char*>(data_);
    auto* dst = static_cast<char*>(t.data_);
    for_each_offset(shape_, strides_, [&](std::int64_t i, std::int64_t s) {
        std::memcpy(dst + static_cast<std::size_t>(i) * size, src + static_cast<std::size_t>(s) * size, size);
    });
    return t;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(DType dtype) const {
    if (device_ != Device::cpu) throw Error(Status::invalid_argument, "to(dtype): only CPU tensors are converted");
    const Tensor src = contiguous();
    if (dtype == dtype_) return clone();
    Tensor dst = empty(dtype, shape_, Device::cpu);
    const auto n = static_cast<std::size_t>(numel());
    if (dtype_ == DType::f32) {
        const float* s = src.data<const float>();
        if (dtype == DType::f16) convert(s, dst.data<Half>(), n);
        else convert(s, dst.data<BFloat16>(), n);
        return dst;
    }
    // Between the two 16-bit formats: through float, which is exact for both.
    Tensor wide = dtype == DType::f32 ? dst : empty(DType::f32, shape_, Device::cpu);
    if (dtype_ == DType::f16) convert(src.data<const Half>(), wide.data<float>(), n);
    else convert(src.data<const BFloat16>(), wide.data<float>(), n);
    return dtype == DType::f32 ? wide : wide.to(dtype);
}

Tensor Tensor::to(Device device) const {
    if (device == device_) return clone();
    const Tensor src = device_ == Device::cpu ? contiguous() : *this;
    if (!src.is_contiguous()) throw Error(Status::invalid_argument, "to(device): strided CUDA tensors are not supported");
    Tensor dst = empty(dtype_, shape_, device);
    cuda::copy(dst.data_, src.data_, nbytes(),
               device == Device::cuda ? cuda::CopyKind::host_to_device : cuda::CopyKind::device_to_host);
    return dst;
}

}  // namespace unclip
