// The picker: smooth weighted round robin as earliest eligible virtual deadline first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "heap.hpp"
#include "radix.hpp"

namespace astra::gateway {

// Virtual time per unit of weight: endpoint i's request is 2^42 / w_i long.
inline constexpr int64_t kScale = int64_t{1} << 42;
// The largest weight; weights are integers in [1, kMaxWeight].
inline constexpr int64_t kMaxWeight = int64_t{1} << 16;
// The most endpoints a picker holds (heap entries keep their index in 20 bits).
inline constexpr int64_t kMaxEndpoints = int64_t{1} << kIndexBits;
// Virtual times are shifted down by a multiple of kRebaseBy when a pick or an update
// leaves the clock at kRebaseAt or later, and after a jump of the clock: keys are
// within a request (at most 2^42) and a clock step (at most 2^42) of a clock below
// 2^43, so every key in the heaps stays in [0, 2^44).
inline constexpr int64_t kRebaseAt = int64_t{1} << 42;
inline constexpr int64_t kRebaseBy = int64_t{1} << 41;

// Smooth weighted round robin over endpoints named by integer slots, picking in
// O(log n) (a heap and a radix heap); see gateway/_picker.py for the algorithm, its bound and
// the pure-Python twin that makes the same picks. Thread-safe: each method holds the
// picker's mutex (the fast lane picks while Python updates weights).
class Picker {
 public:
  // Applies weight changes as one update: (slot, weight) adds an endpoint or sets its
  // weight, weight 0 removes it. Throws std::invalid_argument on a weight outside
  // [0, kMaxWeight], a slot given twice, or more than kMaxEndpoints endpoints.
  // O(n + k log k).
  void update(std::vector<std::pair<int64_t, int64_t>> changes);

  // The next endpoint's slot, or -1 when there is none. O(log n).
  int64_t pick();

  // `count` picks, their slots dropped (benchmarks, fast-forwarding).
  void skip(int64_t count);

  size_t size() const;
  bool contains(int64_t slot) const;
  // The endpoints as (slot, weight), by slot.
  std::vector<std::pair<int64_t, int64_t>> weights() const;
  // How many picks `slot` is owed (> 0) or ahead (< 0) against its weighted share.
  // Throws std::out_of_range for an unknown slot.
  double lag(int64_t slot) const;
  // The virtual clock, in picks per unit of weight since the picker was created.
  double virtual_time() const;

 private:
  int64_t pick_locked();
  size_t index_of(int64_t slot) const;
  void forgive_and_rebuild();
  void promote();
  int64_t shift_clock();
  void rebase();

  mutable std::mutex mutex_;
  std::vector<int64_t> slots_;    // ascending
  std::vector<int64_t> weights_;
  std::vector<int64_t> strides_;  // kScale / weight
  std::vector<int64_t> eligible_at_;
  int64_t total_ = 0;             // the sum of the weights
  // The clock: now = now_ + remainder_ / total_, advanced by kScale / total_ per pick
  // (step_ + step_remainder_ / total_).
  int64_t now_ = 0;
  int64_t remainder_ = 0;
  int64_t step_ = 0;
  int64_t step_remainder_ = 0;
  double shifted_ = 0;  // the virtual time shifted away, for virtual_time()
  // Entries are (key, index into the vectors above, which are in slot order).
  Heap eligible_;       // endpoints with eligible_at <= now_, by deadline
  RadixQueue waiting_;  // the others, by eligible time
};

}  // namespace astra::gateway
