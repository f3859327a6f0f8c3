// A monotone priority queue (a radix heap) of the picker's waiting endpoints.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "heap.hpp"

namespace astra::gateway {

// The waiting endpoints, by eligible time. The clock only moves forward, every key
// pushed is later than it, and what leaves is every key the clock has reached, so a
// radix heap serves, relative to a floor (the clock at the last take): bucket b > 0
// holds the keys whose highest bit differing from the floor is bit b - 1, bucket 0
// the keys equal to it. A push is O(1); a take empties the buckets below the clock's
// own and re-files the clock's bucket one level down or more, so each entry is
// touched O(1) times amortized (at most 45). Keys are in [0, 2^44).
class RadixQueue {
 public:
  bool empty() const { return size_ == 0; }

  // Empties the queue and sets the floor; later keys must be >= it.
  void reset(int64_t floor) {
    for (auto& bucket : buckets_) bucket.clear();
    occupied_ = 0;
    floor_ = static_cast<uint64_t>(floor);
    size_ = 0;
  }

  // Adds an entry whose key is >= the floor.
  void push(Entry entry) {
    put(entry);
    ++size_;
  }

  // The smallest key; the queue must not be empty. O(size of one bucket).
  int64_t min_key() const {
    const std::vector<Entry>& lowest = buckets_[static_cast<size_t>(__builtin_ctzll(occupied_))];
    return entry_key(*std::min_element(lowest.begin(), lowest.end()));
  }

  // Takes out every entry with a key <= `now` (>= the floor), in no particular order,
  // passing each to `take`; `now` becomes the floor.
  template <typename Take>
  void take_until(int64_t now, Take&& take) {
    const auto clock = static_cast<uint64_t>(now);
    const size_t own = bucket_of(clock);
    // Buckets below the clock's own hold keys below it; the clock's own is mixed.
    uint64_t due = occupied_ & ((uint64_t{2} << own) - 1);
    if (!due) {
      floor_ = clock;  // the other buckets file the same relative to the clock
      return;
    }
    occupied_ &= ~due;
    std::vector<Entry>& mixed = buckets_[own];
    if (due >> own & 1) moving_.swap(mixed);
    due &= ~(uint64_t{1} << own);
    for (; due; due &= due - 1) {
      std::vector<Entry>& bucket = buckets_[static_cast<size_t>(__builtin_ctzll(due))];
      for (const Entry entry : bucket) take(entry);
      size_ -= bucket.size();
      bucket.clear();
    }
    floor_ = clock;
    for (const Entry entry : moving_) {
      if (static_cast<uint64_t>(entry_key(entry)) <= clock) {
        take(entry);
        --size_;
      } else {
        put(entry);
      }
    }
    moving_.clear();
  }

  // Lowers every key by `amount` (order is kept; no key may go below 0), and the floor
  // as far as 0. O(size): every entry is filed again against the new floor.
  void subtract(int64_t amount) {
    const Entry delta = static_cast<uint64_t>(amount) << kIndexBits;
    std::vector<Entry> entries;
    entries.reserve(size_);
    for (const auto& bucket : buckets_) {
      for (const Entry entry : bucket) entries.push_back(entry - delta);
    }
    reset(std::max(static_cast<int64_t>(floor_) - amount, int64_t{0}));
    for (const Entry entry : entries) push(entry);
  }

 private:
  static constexpr size_t kBuckets = 45;

  size_t bucket_of(uint64_t key) const {
    return key == floor_ ? 0 : static_cast<size_t>(64 - __builtin_clzll(key ^ floor_));
  }

  void put(Entry entry) {
    const size_t bucket = bucket_of(static_cast<uint64_t>(entry_key(entry)));
    buckets_[bucket].push_back(entry);
    occupied_ |= uint64_t{1} << bucket;
  }

  std::array<std::vector<Entry>, kBuckets> buckets_;
  std::vector<Entry> moving_;  // scratch for take_until
  uint64_t occupied_ = 0;      // bit b: bucket b is not empty
  uint64_t floor_ = 0;
  size_t size_ = 0;
};

}  // namespace astra::gateway
