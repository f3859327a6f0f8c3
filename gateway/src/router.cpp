#include "router.hpp"

#include <algorithm>

#include "wire.hpp"

namespace astra::gateway {

void Router::set(std::string_view name, std::string_view version, std::shared_ptr<Picker> picker) {
  std::lock_guard lock(mutex_);
  auto model = models_.find(name);
  if (model == models_.end()) {
    if (!picker) return;
    model = models_.emplace(std::string(name), Versions{}).first;
  }
  Versions& versions = model->second;
  auto found = std::find_if(versions.begin(), versions.end(),
                            [&](const auto& entry) { return entry.first == version; });
  if (found != versions.end()) {
    if (picker) {
      found->second = std::move(picker);
      return;
    }
    versions.erase(found);
    --size_;
    if (versions.empty()) models_.erase(model);
  } else if (picker) {
    versions.emplace_back(std::string(version), std::move(picker));
    ++size_;
  }
}

std::shared_ptr<Picker> Router::get(std::string_view name, std::string_view version) const {
  std::lock_guard lock(mutex_);
  const auto model = models_.find(name);
  if (model == models_.end()) return nullptr;
  for (const auto& [known, picker] : model->second) {
    if (known == version) return picker;
  }
  return nullptr;
}

size_t Router::size() const {
  std::lock_guard lock(mutex_);
  return size_;
}

int64_t Router::route(std::string_view request, std::shared_ptr<Picker>* picked) const {
  ModelRef ref;
  if (!read_model(request, ref)) return kMalformed;
  std::lock_guard lock(mutex_);
  const auto model = models_.find(ref.name);
  if (model == models_.end()) return kUnknown;
  for (const auto& [version, picker] : model->second) {
    if (version != ref.version) continue;
    const int64_t slot = picker->pick();
    if (slot < 0) return kNoEndpoint;
    if (picked) *picked = picker;
    return slot;
  }
  return kUnknown;
}

}  // namespace astra::gateway
