#include "io/pickle.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "unclip/error.hpp"
#include "unclip/io/ckpt.hpp"

namespace unclip::io::pickle {

namespace {

using Kind = Value::Kind;

// The storages torch.save writes (torch/storage.py _LegacyStorage subclasses).
constexpr const char* kStorageTypes[] = {"FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage",
                                         "LongStorage",  "IntStorage",  "ShortStorage",    "CharStorage",
                                         "ByteStorage",  "BoolStorage"};

// Every global the interpreter resolves; each becomes a data constructor below, nothing else.
bool allowed_global(const std::string& name) {
    static const char* const kAllowed[] = {
        "collections.OrderedDict",      "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",   "numpy.dtype",
        "_codecs.encode"};
    for (const char* a : kAllowed)
        if (name == a) return true;
    if (name.rfind("torch.", 0) == 0)
        for (const char* s : kStorageTypes)
            if (name.compare(6, std::string::npos, s) == 0) return true;
    return false;
}

class Machine {
public:
    Machine(std::string_view bytes, const std::string& label) : in_(bytes), label_(label) {}

    ValuePtr run() {
        while (true) {
            const std::size_t at = pos_;
            const auto op = static_cast<unsigned char>(take(1)[0]);
            if (op == '.') break;  // STOP
            step(op, at);
        }
        if (stack_.size() != 1) fail("the pickle ends with " + std::to_string(stack_.size()) + " values on the stack");
        return stack_.back();
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw Error(Status::bad_model, "open '" + label_ + "': data.pkl: " + what);
    }
    std::string_view take(std::size_t n) {
        if (n > in_.size() - pos_) fail("truncated at byte " + std::to_string(pos_));
        const auto s = in_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    std::uint64_t le(std::size_t n) {
        const auto s = take(n);
        std::uint64_t v = 0;
        for (std::size_t i = n; i-- > 0;) v = (v << 8) | static_cast<unsigned char>(s[i]);
        return v;
    }
    std::string_view line() {
        const auto end = in_.find('\n', pos_);
        if (end == std::string_view::npos) fail("unterminated text argument at byte " + std::to_string(pos_));
        const auto s = in_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return s;
    }

    ValuePtr make(Kind kind) {
        auto v = std::make_shared<Value>();
        v->kind = kind;
        return v;
    }
    void push(ValuePtr v) { stack_.push_back(std::move(v)); }
    ValuePtr pop() {
        if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow at byte " + std::to_string(pos_));
        auto v = std::move(stack_.back());
        stack_.pop_back();
        return v;
    }
    ValuePtr& top() {
        if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow at byte " + std::to_string(pos_));
        return stack_.back();
    }
    std::vector<ValuePtr> pop_mark() {
        if (marks_.empty()) fail("no MARK before byte " + std::to_string(pos_));
        const std::size_t mark = marks_.back();
        marks_.pop_back();
        std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
        stack_.resize(mark);
        return items;
    }
    // A container only grows while nothing holds it: once nested, a value is frozen. So depths
    // recorded at insertion stay true, and no container can come to hold itself (a reference
    // cycle, which shared ownership would leak and a tree walk would follow forever).
    void nest(Value& container, Value& child) {
        if (container.nested || &container == &child)
            fail("a container is modified after being placed in another, or placed in itself (cycles are not allowed)");
        child.nested = true;
        container.depth = std::max(container.depth, child.depth + 1);
        if (container.depth > kMaxPickleNesting)
            fail("containers nested deeper than " + std::to_string(kMaxPickleNesting) + " levels");
    }
    ValuePtr sequence(Kind kind, std::vector<ValuePtr> items) {
        auto v = make(kind);
        for (const auto& item : items) nest(*v, *item);
        v->items = std::move(items);
        return v;
    }
    void set_items(Value& dict, const std::vector<ValuePtr>& kv) {
        if (dict.kind != Kind::dict) fail("SETITEM on a value that is not a dict");
        if (kv.size() % 2) fail("SETITEMS with an odd number of values");
        for (std::size_t i = 0; i < kv.size(); i += 2) {
            nest(dict, *kv[i]);
            nest(dict, *kv[i + 1]);
            dict.entries.emplace_back(kv[i], kv[i + 1]);
        }
    }
    void append(Value& list, const std::vector<ValuePtr>& items) {
        if (list.kind != Kind::list) fail("APPEND on a value that is not a list");
        for (const auto& item : items) {
            nest(list, *item);
            list.items.push_back(item);
        }
    }
    void memo_put(std::uint64_t index) { memo_[index] = top(); }
    ValuePtr memo_get(std::uint64_t index) {
        const auto it = memo_.find(index);
        if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " read before it was written");
        return it->second;
    }
    ValuePtr global(std::string module, std::string name) {
        const std::string full = module + "." + name;
        if (!allowed_global(full)) fail("global '" + full + "' is not allowed (only state-dict globals are)");
        auto v = make(Kind::global);
        v->text = full;
        return v;
    }

    static std::int64_t as_int(const Value& v, bool& ok) {
        ok = v.kind == Kind::integer || v.kind == Kind::boolean;
        return v.integer;
    }
    std::vector<std::int64_t> int_tuple(const Value& v, const char* what) {
        if (v.kind != Kind::tuple && v.kind != Kind::list) fail(std::string(what) + " is not a tuple");
        std::vector<std::int64_t> out;
        for (const auto& item : v.items) {
            bool ok = false;
            out.push_back(as_int(*item, ok));
            if (!ok) fail(std::string(what) + " holds a value that is not an integer");
        }
        return out;
    }

    ValuePtr call(const Value& callable, const Value& args) {
        if (callable.kind != Kind::global) fail("REDUCE on a value that is not a global");
        if (args.kind != Kind::tuple) fail("REDUCE arguments of '" + callable.text + "' are not a tuple");
        const std::string& f = callable.text;
        const auto& a = args.items;
        if (f == "collections.OrderedDict") {
            auto dict = make(Kind::dict);
            if (a.empty()) return dict;
            if (a.size() != 1 || (a[0]->kind != Kind::list && a[0]->kind != Kind::tuple))
                fail("OrderedDict takes one list of pairs");
            for (const auto& pair : a[0]->items) {
                if (pair->kind != Kind::tuple || pair->items.size() != 2) fail("OrderedDict item is not a pair");
                set_items(*dict, pair->items);
            }
            return dict;
        }
        if (f == "torch._utils._rebuild_tensor_v2") {
            if (a.size() != 6 && a.size() != 7) fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(a.size()));
            if (a[0]->kind != Kind::storage) fail("_rebuild_tensor_v2: first argument is not a storage");
            auto t = std::make_shared<TensorRef>();
            t->storage = a[0]->storage;
            bool ok = false;
            t->offset = as_int(*a[1], ok);
            if (!ok || t->offset < 0) fail("_rebuild_tensor_v2: storage offset is not a non-negative integer");
            t->size = int_tuple(*a[2], "tensor size");
            t->stride = int_tuple(*a[3], "tensor stride");
            if (t->size.size() != t->stride.size()) fail("tensor size and stride differ in length");
            auto v = make(Kind::tensor);
            v->tensor = std::move(t);
            return v;
        }
        if (f == "torch._utils._rebuild_parameter") {
            if (a.size() != 3 || a[0]->kind != Kind::tensor) fail("_rebuild_parameter takes (tensor, requires_grad, hooks)");
            return a[0];
        }
        if (f == "_codecs.encode") {
            if (a.size() != 2 || a[0]->kind != Kind::string || a[1]->kind != Kind::string)
                fail("_codecs.encode takes (str, encoding)");
            auto v = make(Kind::bytes);
            v->text = latin1(a[0]->text);
            return v;
        }
        if (f.rfind("numpy.", 0) == 0) {  // a numpy scalar or dtype in training metadata: kept opaque
            auto v = make(Kind::opaque);
            v->text = f;
            return v;
        }
        fail("global '" + f + "' cannot be called");
    }

    // Protocol 2 stores bytes as _codecs.encode(latin-1 text); the text arrives as UTF-8.
    std::string latin1(const std::string& utf8) {
        std::string out;
        for (std::size_t i = 0; i < utf8.size(); ++i) {
            const auto c = static_cast<unsigned char>(utf8[i]);
            if (c < 0x80) {
                out.push_back(static_cast<char>(c));
            } else if ((c & 0xe0) == 0xc0 && i + 1 < utf8.size() && c <= 0xc3) {
                out.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(utf8[++i]) & 0x3f)));
            } else {
                fail("_codecs.encode: text is not latin-1");
            }
        }
        return out;
    }

    ValuePtr persistent(const Value& pid) {
        if (pid.kind != Kind::tuple || pid.items.size() != 5 || pid.items[0]->kind != Kind::string ||
            pid.items[0]->text != "storage")
            fail("persistent id is not ('storage', type, key, location, numel)");
        const auto& type = *pid.items[1];
        const auto& key = *pid.items[2];
        bool ok = false;
        const std::int64_t numel = as_int(*pid.items[4], ok);
        if (type.kind != Kind::global || type.text.rfind("torch.", 0) != 0 || type.text.find("Storage") == std::string::npos)
            fail("persistent id names no torch storage type");
        if (key.kind != Kind::string || key.text.empty() || key.text.find('/') != std::string::npos)
            fail("persistent id has an invalid storage key");
        if (!ok || numel < 0) fail("storage '" + key.text + "' has an invalid element count");
        auto s = std::make_shared<StorageRef>();
        s->type = type.text.substr(6);
        s->key = key.text;
        s->numel = numel;
        auto v = make(Kind::storage);
        v->storage = std::move(s);
        return v;
    }

    ValuePtr string_value(Kind kind, std::string_view s) {
        auto v = make(kind);
        v->text = std::string(s);
        return v;
    }
    ValuePtr int_value(std::int64_t i, Kind kind = Kind::integer) {
        auto v = make(kind);
        v->integer = i;
        return v;
    }

    void step(unsigned char op, std::size_t at) {
        switch (op) {
            case 0x80: take(1); break;                                   // PROTO
            case 0x95: take(8); break;                                   // FRAME
            case '(': marks_.push_back(stack_.size()); break;           // MARK
            case '}': push(make(Kind::dict)); break;                     // EMPTY_DICT
            case ']': push(make(Kind::list)); break;                     // EMPTY_LIST
            case ')': push(make(Kind::tuple)); break;                    // EMPTY_TUPLE
            case 't': push(sequence(Kind::tuple, pop_mark())); break;    // TUPLE
            case 'l': push(sequence(Kind::list, pop_mark())); break;     // LIST
            case 0x85: case 0x86: case 0x87: {                          // TUPLE1..3
                std::vector<ValuePtr> items(op - 0x84u);
                for (std::size_t i = items.size(); i-- > 0;) items[i] = pop();
                push(sequence(Kind::tuple, std::move(items)));
                break;
            }
            case 's': {                                                  // SETITEM
                auto value = pop();
                auto key = pop();
                set_items(*top(), {key, value});
                break;
            }
            case 'u': { auto kv = pop_mark(); set_items(*top(), kv); break; }   // SETITEMS
            case 'a': { auto item = pop(); append(*top(), {item}); break; }    // APPEND
            case 'e': { auto items = pop_mark(); append(*top(), items); break; } // APPENDS
            case 'J': push(int_value(static_cast<std::int32_t>(le(4)))); break;  // BININT
            case 'K': push(int_value(static_cast<std::int64_t>(le(1)))); break;  // BININT1
            case 'M': push(int_value(static_cast<std::int64_t>(le(2)))); break;  // BININT2
            case 0x8a: {                                                 // LONG1
                const auto n = static_cast<std::size_t>(le(1));
                if (n > 8) fail("integer of " + std::to_string(n) + " bytes does not fit 64 bits");
                std::uint64_t v = n ? le(n) : 0;
                if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1u) v |= ~std::uint64_t{0} << (8 * n);  // sign-extend
                push(int_value(static_cast<std::int64_t>(v)));
                break;
            }
            case 'G': {                                                  // BINFLOAT, big-endian
                const auto s = take(8);
                std::uint64_t bits = 0;
                for (char c : s) bits = (bits << 8) | static_cast<unsigned char>(c);
                auto v = make(Kind::real);
                std::memcpy(&v->real, &bits, sizeof bits);
                push(v);
                break;
            }
            case 'X': push(string_value(Kind::string, take(le(4)))); break;     // BINUNICODE
            case 0x8c: push(string_value(Kind::string, take(le(1)))); break;    // SHORT_BINUNICODE
            case 0x8d: push(string_value(Kind::string, take(le(8)))); break;    // BINUNICODE8
            case 'B': push(string_value(Kind::bytes, take(le(4)))); break;      // BINBYTES
            case 'C': push(string_value(Kind::bytes, take(le(1)))); break;      // SHORT_BINBYTES
            case 0x8e: push(string_value(Kind::bytes, take(le(8)))); break;     // BINBYTES8
            case 'N': push(make(Kind::none)); break;                             // NONE
            case 0x88: push(int_value(1, Kind::boolean)); break;                 // NEWTRUE
            case 0x89: push(int_value(0, Kind::boolean)); break;                 // NEWFALSE
            case 'c': {                                                          // GLOBAL
                std::string module(line());
                std::string name(line());
                push(global(std::move(module), std::move(name)));
                break;
            }
            case 0x93: {                                                         // STACK_GLOBAL
                auto name = pop();
                auto module = pop();
                if (module->kind != Kind::string || name->kind != Kind::string) fail("STACK_GLOBAL needs two strings");
                push(global(module->text, name->text));
                break;
            }
            case 'R': case 0x81: {                                               // REDUCE, NEWOBJ
                auto args = pop();
                auto callable = pop();
                push(call(*callable, *args));
                break;
            }
            case 'b': {                                                          // BUILD
                pop();  // the state, which numpy metadata objects do not need
                if (top()->kind != Kind::opaque) fail("BUILD is only accepted on numpy metadata objects");
                break;
            }
            case 'Q': push(persistent(*pop())); break;                           // BINPERSID
            case 'q': memo_put(le(1)); break;                                    // BINPUT
            case 'r': memo_put(le(4)); break;                                    // LONG_BINPUT
            case 0x94: memo_put(memo_.size()); break;                            // MEMOIZE
            case 'h': push(memo_get(le(1))); break;                              // BINGET
            case 'j': push(memo_get(le(4))); break;                              // LONG_BINGET
            case '0': pop(); break;                                              // POP
            case '1': pop_mark(); break;                                         // POP_MARK
            case '2': push(top()); break;                                        // DUP
            default: {
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", op);
                fail(std::string("opcode ") + hex + " at byte " + std::to_string(at) + " is not supported");
            }
        }
    }

    std::string_view in_;
    const std::string& label_;
    std::size_t pos_ = 0;
    std::vector<ValuePtr> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint64_t, ValuePtr> memo_;
};

}  // namespace

ValuePtr load(std::string_view bytes, const std::string& label) {
    if (bytes.size() > kMaxPickleBytes)
        throw Error(Status::bad_model, "open '" + label + "': data.pkl is " + std::to_string(bytes.size()) +
                                           " bytes, over the limit of " + std::to_string(kMaxPickleBytes));
    return Machine(bytes, label).run();
}

}  // namespace unclip::io::pickle
