// A 4-ary min-heap of 64-bit entries, header-only so that it inlines into the picker.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace astra::gateway {

// An entry packs a key in [0, 2^44) and an index in [0, 2^20): (key << 20) | index.
// One 64-bit comparison orders entries by key, then by index.
using Entry = uint64_t;
inline constexpr int kIndexBits = 20;

inline Entry make_entry(int64_t key, uint32_t index) {
  assert(key >= 0 && key < (int64_t{1} << (64 - kIndexBits)) && index < (uint32_t{1} << kIndexBits));
  return (static_cast<uint64_t>(key) << kIndexBits) | index;
}
inline int64_t entry_key(Entry entry) { return static_cast<int64_t>(entry >> kIndexBits); }
inline uint32_t entry_index(Entry entry) {
  return static_cast<uint32_t>(entry & ((uint64_t{1} << kIndexBits) - 1));
}

// A node's children are 4i+1..4i+4, adjacent in memory, so n entries are log4(n)
// levels deep and a level costs one cache line.
class Heap {
 public:
  static constexpr size_t kArity = 4;

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  Entry top() const { return entries_.front(); }
  void clear() { entries_.clear(); }
  void add_unordered(Entry entry) { entries_.push_back(entry); }

  void push(Entry entry) {
    entries_.push_back(entry);
    sift_up(entries_.size() - 1, entry);
  }

  // Replaces the top with `entry`: a sift-down that stops where the entry belongs.
  void replace_top(Entry entry) { sift_down(0, entry); }

  // Removes the top. The last entry, which belongs near the bottom, fills the hole:
  // the hole goes down to a leaf by the smallest children, then the entry climbs the
  // few levels it must (Floyd's method: no comparison with it on the way down).
  void pop() {
    const Entry last = entries_.back();
    entries_.pop_back();
    const size_t size = entries_.size();
    if (size == 0) return;
    Entry* const data = entries_.data();
    size_t position = 0;
    for (size_t first = 1; first < size; first = kArity * position + 1) {
      const size_t best = smallest_child(data, first, size);
      data[position] = data[best];
      position = best;
    }
    sift_up(position, last);
  }

  void heapify() {
    const size_t size = entries_.size();
    if (size < 2) return;
    for (size_t position = (size - 2) / kArity + 1; position-- > 0;) {
      sift_down(position, entries_[position]);
    }
  }

  // Lowers every key by `amount` (order is kept; no key may go below 0).
  void subtract(int64_t amount) {
    const Entry delta = static_cast<uint64_t>(amount) << kIndexBits;
    for (Entry& entry : entries_) entry -= delta;
  }

 private:
  static size_t smallest_child(const Entry* data, size_t first, size_t size) {
    const Entry* const children = data + first;
    if (first + kArity <= size) {  // a full family: a branch-free tournament
      const size_t left = children[1] < children[0] ? 1 : 0;
      const size_t right = children[3] < children[2] ? 3 : 2;
      return first + (children[right] < children[left] ? right : left);
    }
    size_t best = 0;
    for (size_t child = 1; first + child < size; ++child) {
      if (children[child] < children[best]) best = child;
    }
    return first + best;
  }

  // Puts `entry` in the hole at `position` or above.
  void sift_up(size_t position, Entry entry) {
    Entry* const data = entries_.data();
    while (position > 0) {
      const size_t parent = (position - 1) / kArity;
      if (data[parent] <= entry) break;
      data[position] = data[parent];
      position = parent;
    }
    data[position] = entry;
  }

  // Puts `entry` in the hole at `position` or below.
  void sift_down(size_t position, Entry entry) {
    const size_t size = entries_.size();
    Entry* const data = entries_.data();
    for (size_t first = kArity * position + 1; first < size; first = kArity * position + 1) {
      const size_t best = smallest_child(data, first, size);
      if (entry <= data[best]) break;
      data[position] = data[best];
      position = best;
    }
    data[position] = entry;
  }

  std::vector<Entry> entries_;
};

}  // namespace astra::gateway
