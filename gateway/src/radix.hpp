// A monotone priority queue (a radix heap on 4-bit digits) of the picker's waiting
// endpoints.
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
// radix heap serves, relative to a floor (the clock at the last take): a key is filed
// by the highest 4-bit digit in which it differs from the floor (its level) and its
// value there; keys equal to the floor have a bucket of their own. A take empties the
// buckets wholly below the clock and files the clock's own bucket again against the
// new floor, which only ever moves an entry to a lower level: a push is O(1) and an
// entry moves at most 11 times (keys are in [0, 2^44)), about log16 of how far ahead
// of the clock it was. Entries of equal keys come out in no particular order.
class RadixQueue {
 public:
  bool empty() const { return size_ == 0; }

  // Empties the queue and sets the floor; later keys must be >= it.
  void reset(int64_t floor) {
    for (auto& level : buckets_) {
      for (auto& bucket : level) bucket.clear();
    }
    equal_.clear();
    levels_ = 0;
    digits_.fill(0);
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
    if (!equal_.empty()) return static_cast<int64_t>(floor_);
    const auto level = static_cast<size_t>(__builtin_ctz(levels_));
    const auto& lowest = buckets_[level][static_cast<size_t>(__builtin_ctz(digits_[level]))];
    return entry_key(*std::min_element(lowest.begin(), lowest.end()));
  }

  // Takes out every entry with a key <= `now` (>= the floor), in no particular order,
  // passing each to `take`; `now` becomes the floor.
  template <typename Take>
  void take_until(int64_t now, Take&& take) {
    const auto clock = static_cast<uint64_t>(now);
    take_all(equal_, take);
    if (clock == floor_) return;
    const size_t top = level_of(clock);
    const size_t digit = digit_at(clock, top);
    // Levels below the clock's, and its level's digits below the clock's: all due.
    for (uint32_t below = levels_ & ((1u << top) - 1); below; below &= below - 1) {
      const auto level = static_cast<size_t>(__builtin_ctz(below));
      for (uint32_t digits = digits_[level]; digits; digits &= digits - 1) {
        take_all(buckets_[level][static_cast<size_t>(__builtin_ctz(digits))], take);
      }
      clear_level(level);
    }
    for (uint32_t digits = digits_[top] & ((1u << digit) - 1); digits; digits &= digits - 1) {
      const auto lower = static_cast<size_t>(__builtin_ctz(digits));
      take_all(buckets_[top][lower], take);
      clear_digit(top, lower);
    }
    floor_ = clock;
    // The clock's own bucket: due entries leave, the others move down a level or more.
    if (digits_[top] >> digit & 1) {
      moving_.swap(buckets_[top][digit]);
      clear_digit(top, digit);
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
  }

  // Lowers every key by `amount` (order is kept; no key may go below 0), and the floor
  // as far as 0. O(size): every entry is filed again against the new floor.
  void subtract(int64_t amount) {
    const Entry delta = static_cast<uint64_t>(amount) << kIndexBits;
    std::vector<Entry> entries(equal_.begin(), equal_.end());
    for (const auto& level : buckets_) {
      for (const auto& bucket : level) entries.insert(entries.end(), bucket.begin(), bucket.end());
    }
    reset(std::max(static_cast<int64_t>(floor_) - amount, int64_t{0}));
    for (const Entry entry : entries) push(entry - delta);
  }

 private:
  static constexpr size_t kLevels = 11;  // 4-bit digits of a 44-bit key

  size_t level_of(uint64_t key) const { return static_cast<size_t>(63 - __builtin_clzll(key ^ floor_)) / 4; }
  static size_t digit_at(uint64_t key, size_t level) { return static_cast<size_t>(key >> (4 * level) & 15); }

  void put(Entry entry) {
    const auto key = static_cast<uint64_t>(entry_key(entry));
    if (key == floor_) {
      equal_.push_back(entry);
      return;
    }
    const size_t level = level_of(key);
    const size_t digit = digit_at(key, level);
    buckets_[level][digit].push_back(entry);
    digits_[level] |= 1u << digit;
    levels_ |= 1u << level;
  }

  template <typename Take>
  void take_all(std::vector<Entry>& bucket, Take& take) {
    for (const Entry entry : bucket) take(entry);
    size_ -= bucket.size();
    bucket.clear();
  }

  void clear_level(size_t level) {
    digits_[level] = 0;
    levels_ &= ~(1u << level);
  }

  void clear_digit(size_t level, size_t digit) {
    digits_[level] &= ~(1u << digit);
    if (!digits_[level]) levels_ &= ~(1u << level);
  }

  std::array<std::array<std::vector<Entry>, 16>, kLevels> buckets_;
  std::vector<Entry> equal_;    // keys equal to the floor
  std::vector<Entry> moving_;   // scratch for take_until
  std::array<uint32_t, kLevels> digits_{};  // bit d: bucket (level, d) is not empty
  uint32_t levels_ = 0;                     // bit l: level l has a non-empty bucket
  uint64_t floor_ = 0;
  size_t size_ = 0;
};

}  // namespace astra::gateway
