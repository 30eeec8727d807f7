#pragma once
// Named weights for modules: a map from checkpoint key to tensor, and the checks that turn a
// missing key or a wrong shape or dtype into an error naming the key.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "unclip/detail/export.hpp"
#include "unclip/tensor.hpp"

namespace unclip::nn {

// The weight matrix of a Linear or Conv2d layer in the dtype the checkpoint stores it in (f32, f16
// or bf16): the CPU GEMM widens it to fp32 while it packs it, so half-precision checkpoints are
// never copied to fp32 as a whole.
struct MatrixView {
    const void* data = nullptr;
    DType dtype = DType::f32;
    Shape shape;
    MatrixView() = default;
    MatrixView(const void* d, DType t, Shape s) : data(d), dtype(t), shape(std::move(s)) {}
    template <class T> MatrixView(View<T> v) : data(v.data), dtype(dtype_of<std::remove_const_t<T>>), shape(v.shape) {}
    // Rows [first, first + rows) of a matrix whose rows hold `shape[1..]` elements.
    MatrixView rows(std::int64_t first, Shape sub) const {
        const auto* bytes = static_cast<const unsigned char*>(data);
        return {bytes + first * (shape.numel() / shape[0]) * static_cast<std::int64_t>(dtype_size(dtype)), dtype,
                std::move(sub)};
    }
};

class UNCLIP_CXX_API WeightMap {
public:
    // Replaces any tensor of the same name.
    void insert(const std::string& name, Tensor tensor) {
        widened_.erase(name);
        tensors_[name] = std::move(tensor);
    }
    const Tensor* find(std::string_view name) const {
        const auto it = tensors_.find(std::string(name));
        return it == tensors_.end() ? nullptr : &it->second;
    }
    std::size_t size() const noexcept { return tensors_.size(); }
    const std::map<std::string, Tensor>& tensors() const noexcept { return tensors_; }

    // The tensor as a contiguous view of T with exactly `expected` shape. Throws
    // Error(Status::bad_model): "tensor 'name': missing" / "shape [..], expected [..]" /
    // "dtype F16, expected F32" (unless widen_on_demand).
    template <class T> CView<T> require(const std::string& name, const Shape& expected) const {
        const Tensor* t = find(name);
        if (!t) throw Error(Status::bad_model, "tensor '" + name + "': missing");
        requested_names_.insert(name);
        return checked<T>(name, widened<T>(name, *t), expected);
    }
    // A Linear/Conv2d weight with exactly `expected` shape, stored as f32, f16 or bf16 (contiguous).
    MatrixView require_matrix(const std::string& name, const Shape& expected) const {
        const Tensor* t = find(name);
        if (!t) throw Error(Status::bad_model, "tensor '" + name + "': missing");
        if (t->shape() != expected)
            throw Error(Status::bad_model, "tensor '" + name + "': shape " + t->shape().str() + ", expected " + expected.str());
        if (!t->is_contiguous()) throw Error(Status::bad_model, "tensor '" + name + "': not contiguous");
        matrix_names_.insert(name);
        requested_names_.insert(name);
        return {t->raw_data(), t->dtype(), t->shape()};
    }
    // Whether a module took `name` through require_matrix (a Linear/Conv2d weight, which a GPU
    // copy keeps in half precision; everything else it stores as fp32).
    bool requested_as_matrix(const std::string& name) const { return matrix_names_.count(name) != 0; }
    // Whether a module took `name` at all (a device copy skips the rest).
    bool requested(const std::string& name) const { return requested_names_.count(name) != 0; }
    // From now on require<float> widens f16/bf16 tensors to an fp32 copy kept in this map (the
    // pipeline's maps do this: norms, biases and embedding tables are widened, matrices are not).
    // Without it a dtype mismatch is an error.
    void widen_on_demand(bool on = true) noexcept { widen_ = on; }
    // Like require, but absence is not an error.
    template <class T> std::optional<CView<T>> optional(const std::string& name, const Shape& expected) const {
        const Tensor* t = find(name);
        if (!t) return std::nullopt;
        requested_names_.insert(name);
        return checked<T>(name, widened<T>(name, *t), expected);
    }

private:
    template <class T> const Tensor& widened(const std::string& name, const Tensor& t) const {
        if (!widen_ || t.dtype() == dtype_of<T> || !std::is_same_v<T, float>) return t;
        auto it = widened_.find(name);
        if (it == widened_.end()) it = widened_.emplace(name, t.to(DType::f32)).first;
        return it->second;
    }
    template <class T> static CView<T> checked(const std::string& name, const Tensor& t, const Shape& expected) {
        if (t.shape() != expected)
            throw Error(Status::bad_model, "tensor '" + name + "': shape " + t.shape().str() + ", expected " + expected.str());
        if (t.dtype() != dtype_of<T>)
            throw Error(Status::bad_model, "tensor '" + name + "': dtype " + std::string(dtype_name(t.dtype())) +
                                               ", expected " + std::string(dtype_name(dtype_of<T>)));
        if (!t.is_contiguous()) throw Error(Status::bad_model, "tensor '" + name + "': not contiguous");
        return {t.data<const T>(), t.shape()};
    }
    std::map<std::string, Tensor> tensors_;
    bool widen_ = false;
    mutable std::map<std::string, Tensor> widened_;  // fp32 copies made by require<float>
    mutable std::set<std::string> matrix_names_;     // names handed out by require_matrix
    mutable std::set<std::string> requested_names_;  // names handed out by any require
};

// A copy in GPU memory (one allocation) of the tensors of `host` that modules have taken, so build
// the modules on `host` first: matrices (require_matrix) keep a half-precision file dtype and
// turn fp32 into fp16 (bf16 with `bf16`), everything else becomes fp32. Modules built on the result
// run over CudaBackend. Throws Error(Status::device) without a GPU, out_of_memory when it is full.
UNCLIP_CXX_API WeightMap upload_weights(const WeightMap& host, bool bf16 = false);

namespace detail {
// Throws Error(status) "<module>: <field> has shape [..], expected [..]": Status::bad_model for a
// weight (the checkpoint is wrong); check_argument_shape, Status::invalid_argument, for a tensor the
// caller provides (an input or an output of the wrong shape is the caller's error, not the model's).
inline void check_shape(const char* module, const char* field, const Shape& actual, const Shape& expected,
                        Status status = Status::bad_model) {
    if (actual != expected)
        throw Error(status, std::string(module) + ": " + field + " has shape " + actual.str() + ", expected " +
                                expected.str());
}
inline void check_argument_shape(const char* module, const char* field, const Shape& actual, const Shape& expected) {
    check_shape(module, field, actual, expected, Status::invalid_argument);
}
inline void check_positive(const char* module, const char* field, std::int64_t value) {
    if (value <= 0)
        throw Error(Status::invalid_argument, std::string(module) + ": " + field + " must be positive, got " +
                                                  std::to_string(value));
}
}  // namespace detail

}  // namespace unclip::nn
