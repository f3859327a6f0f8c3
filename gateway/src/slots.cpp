#include "slots.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace astra::gateway {

SlotTable::SlotTable() : events_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (events_fd_ < 0) throw std::runtime_error(std::string("cannot make an eventfd: ") + std::strerror(errno));
}

SlotTable::~SlotTable() { ::close(events_fd_); }

void SlotTable::set(int64_t slot, const std::string& address) {
  if (slot < 0) throw std::invalid_argument("a slot is >= 0");
  std::shared_ptr<Target> target;
  if (!address.empty()) {
    target = std::make_shared<Target>();
    target->slot = slot;
    target->address = address;
    target->resolved = resolve(address, target->socket);
  }
  std::lock_guard lock(mutex_);
  if (slots_.size() <= static_cast<size_t>(slot)) slots_.resize(static_cast<size_t>(slot) + 1);
  slots_[static_cast<size_t>(slot)] = std::move(target);
  sweep_ = sweep_ || address.empty();
}

std::shared_ptr<Target> SlotTable::get(int64_t slot) {
  std::lock_guard lock(mutex_);
  return slot < static_cast<int64_t>(slots_.size()) ? slots_[static_cast<size_t>(slot)] : nullptr;
}

bool SlotTable::sweep_wanted() {
  std::lock_guard lock(mutex_);
  return std::exchange(sweep_, false);
}

std::unordered_set<std::string> SlotTable::named() {
  std::unordered_set<std::string> out;
  std::lock_guard lock(mutex_);
  for (const auto& target : slots_) {
    if (target) out.insert(target->address);
  }
  return out;
}

void SlotTable::record(Target& target, RetryRules::Verdict verdict, bool ok, int64_t took_ns) {
  switch (verdict) {
    case RetryRules::Verdict::kSample:
      target.samples.fetch_add(1, std::memory_order_relaxed);
      target.sample_ns.fetch_add(took_ns, std::memory_order_relaxed);
      if (ok && target.faulted) {
        target.faulted = false;
        event(target, Health::kRecovered);
      }
      break;
    case RetryRules::Verdict::kRefused:
      event(target, Health::kRefused);
      break;
    case RetryRules::Verdict::kError:
    case RetryRules::Verdict::kFault:
      target.failed.fetch_add(1, std::memory_order_relaxed);
      target.failed_ns.fetch_add(took_ns, std::memory_order_relaxed);
      if (verdict == RetryRules::Verdict::kFault) {
        target.faulted = true;
        event(target, Health::kFault);
      }
      break;
    case RetryRules::Verdict::kNone:
      break;
  }
}

void SlotTable::event(const Target& target, Health kind) {
  bool first;
  {
    std::lock_guard lock(mutex_);
    first = events_.empty();
    events_.push_back({target.slot, target.address, kind});
  }
  if (first) poke(events_fd_);
}

std::vector<SlotStats> SlotTable::take_stats() {
  std::vector<SlotStats> out;
  std::lock_guard lock(mutex_);
  for (const auto& target : slots_) {
    if (!target) continue;
    out.push_back({target->slot, target->in_flight.load(), target->samples.exchange(0),
                   static_cast<double>(target->sample_ns.exchange(0)) * 1e-9, target->failed.exchange(0),
                   static_cast<double>(target->failed_ns.exchange(0)) * 1e-9});
  }
  return out;
}

std::vector<SlotEvent> SlotTable::take_events() {
  uint64_t value;
  [[maybe_unused]] auto got = ::read(events_fd_, &value, sizeof value);
  std::lock_guard lock(mutex_);
  return std::exchange(events_, {});
}

}  // namespace astra::gateway
