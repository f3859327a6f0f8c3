// The per-request hot path: the model a request names, then a pick among its endpoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "picker.hpp"

namespace astra::gateway {

// route() answers a slot (>= 0) or one of these.
inline constexpr int64_t kMalformed = -1;  // the bytes are not a ModelInferRequest
inline constexpr int64_t kUnknown = -2;    // no route for that model and version
inline constexpr int64_t kNoEndpoint = -3;  // a route with no endpoint to pick

// Pickers by model name and version. Which version an empty one means is the caller's
// choice: it sets a picker under version "". Thread-safe: one mutex, held for a
// lookup (and the pick, which takes the picker's own).
class Router {
 public:
  // Routes (name, version) to `picker`; nullptr removes the route.
  void set(std::string_view name, std::string_view version, std::shared_ptr<Picker> picker);
  // The picker of (name, version), or nullptr.
  std::shared_ptr<Picker> get(std::string_view name, std::string_view version) const;
  // The slot of the endpoint a serialized ModelInferRequest goes to, or kMalformed,
  // kUnknown, kNoEndpoint. Reads two fields of the request, then one hash lookup, a
  // scan of the model's versions and one pick; allocates nothing. With `picker`, sets
  // it to the picker that picked.
  int64_t route(std::string_view request, std::shared_ptr<Picker>* picker = nullptr) const;
  size_t size() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  // A model's versions: a short list, scanned.
  using Versions = std::vector<std::pair<std::string, std::shared_ptr<Picker>>>;

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Versions, Hash, std::equal_to<>> models_;
  size_t size_ = 0;
};

}  // namespace astra::gateway
