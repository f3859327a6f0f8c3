// What the lane shares with Python's thread: which endpoint each slot holds, what the
// lane saw of it (counters Python takes with take_stats), and the health events it
// reports (take_events, announced on an eventfd). Every method is thread-safe; a
// Target's counters are atomics, its `faulted` flag the loop thread's.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "lane.hpp"
#include "loop.hpp"
#include "rules.hpp"

namespace astra::gateway {

// One slot's endpoint as Python set it, with its counters.
struct Target {
  int64_t slot;
  std::string address;
  SocketAddress socket;
  bool resolved = false;
  std::atomic<int64_t> in_flight{0}, samples{0}, sample_ns{0}, failed{0}, failed_ns{0};
  bool faulted = false;  // failed since its last success
};

class SlotTable {
 public:
  // Throws std::runtime_error when its eventfd cannot be made.
  SlotTable();
  ~SlotTable();
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  // Slot `slot` holds the endpoint at `address` ("" frees it, and asks for a sweep). O(1).
  void set(int64_t slot, const std::string& address);
  // The slot's endpoint, or nullptr. O(1).
  std::shared_ptr<Target> get(int64_t slot);
  // The addresses some slot holds; resets the sweep request. O(slots).
  std::unordered_set<std::string> named();
  // Whether a slot was freed since the last call to named().
  bool sweep_wanted();

  // Counts an attempt's outcome (`verdict`, after `took_ns`) against its target, and
  // reports refusals, faults and the first success after a fault as health events.
  void record(Target& target, RetryRules::Verdict verdict, bool ok, int64_t took_ns);

  std::vector<SlotStats> take_stats();
  std::vector<SlotEvent> take_events();
  int event_fd() const { return events_fd_; }

 private:
  void event(const Target& target, Health kind);

  std::mutex mutex_;
  std::vector<std::shared_ptr<Target>> slots_;
  std::vector<SlotEvent> events_;
  bool sweep_ = false;
  int events_fd_ = -1;
};

}  // namespace astra::gateway
