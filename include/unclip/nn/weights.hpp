#pragma once
// Named weights for modules: a map from checkpoint key to tensor, and the checks that turn a
// missing key or a wrong shape or dtype into an error naming the key.
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "unclip/detail/export.hpp"
#include "unclip/tensor.hpp"

namespace unclip::nn {

class UNCLIP_CXX_API WeightMap {
public:
    // Replaces any tensor of the same name.
    void insert(const std::string& name, Tensor tensor) { tensors_[name] = std::move(tensor); }
    const Tensor* find(std::string_view name) const {
        const auto it = tensors_.find(std::string(name));
        return it == tensors_.end() ? nullptr : &it->second;
    }
    std::size_t size() const noexcept { return tensors_.size(); }
    const std::map<std::string, Tensor>& tensors() const noexcept { return tensors_; }

    // The tensor as a contiguous view of T with exactly `expected` shape. Throws
    // Error(Status::bad_model): "tensor 'name': missing" / "shape [..], expected [..]" /
    // "dtype F16, expected F32".
    template <class T> CView<T> require(const std::string& name, const Shape& expected) const {
        const Tensor* t = find(name);
        if (!t) throw Error(Status::bad_model, "tensor '" + name + "': missing");
        return checked<T>(name, *t, expected);
    }
    // Like require, but absence is not an error.
    template <class T> std::optional<CView<T>> optional(const std::string& name, const Shape& expected) const {
        const Tensor* t = find(name);
        if (!t) return std::nullopt;
        return checked<T>(name, *t, expected);
    }

private:
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
};

namespace detail {
// Throws Error(Status::bad_model) "<module>: <field> has shape [..], expected [..]".
inline void check_shape(const char* module, const char* field, const Shape& actual, const Shape& expected) {
    if (actual != expected)
        throw Error(Status::bad_model, std::string(module) + ": " + field + " has shape " + actual.str() +
                                           ", expected " + expected.str());
}
inline void check_positive(const char* module, const char* field, std::int64_t value) {
    if (value <= 0)
        throw Error(Status::invalid_argument, std::string(module) + ": " + field + " must be positive, got " +
                                                  std::to_string(value));
}
}  // namespace detail

}  // namespace unclip::nn
