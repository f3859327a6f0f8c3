#include "picker.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace astra::gateway {
namespace {

// ceil(a * b / c) for a, b, c > 0 and a * b < 2^63.
int64_t mul_div_ceil(int64_t a, int64_t b, int64_t c) { return (a * b + c - 1) / c; }

}  // namespace

// -- picker ----------------------------------------------------------------------------

void Picker::update(std::vector<std::pair<int64_t, int64_t>> changes) {
  std::lock_guard lock(mutex_);
  std::sort(changes.begin(), changes.end());
  for (size_t k = 0; k < changes.size(); ++k) {
    const auto [slot, weight] = changes[k];
    if (weight < 0 || weight > kMaxWeight) {
      throw std::invalid_argument("weight " + std::to_string(weight) + " of slot " +
                                  std::to_string(slot) + " is not in [0, 2^16]");
    }
    if (k > 0 && changes[k - 1].first == slot) {
      throw std::invalid_argument("slot " + std::to_string(slot) + " is given twice");
    }
  }
  const int64_t now = now_ + (remainder_ > 0);  // the clock, settled on a whole tick
  std::vector<int64_t> slots, weights, eligible_at;
  const size_t capacity = slots_.size() + changes.size();
  slots.reserve(capacity);
  weights.reserve(capacity);
  eligible_at.reserve(capacity);
  const auto keep = [&](size_t i) {
    slots.push_back(slots_[i]);
    weights.push_back(weights_[i]);
    eligible_at.push_back(eligible_at_[i]);
  };
  size_t i = 0;
  for (const auto& [slot, weight] : changes) {
    for (; i < slots_.size() && slots_[i] < slot; ++i) keep(i);
    int64_t at = now;  // a new endpoint starts level with its share
    if (i < slots_.size() && slots_[i] == slot) {
      // An endpoint ahead of its share stays ahead by as many picks at its new weight.
      if (weight != 0 && eligible_at_[i] > now) at = now + mul_div_ceil(eligible_at_[i] - now, weights_[i], weight);
      ++i;
    }
    if (weight == 0) continue;
    slots.push_back(slot);
    weights.push_back(weight);
    eligible_at.push_back(at);
  }
  for (; i < slots_.size(); ++i) keep(i);
  if (static_cast<int64_t>(slots.size()) > kMaxEndpoints) {
    throw std::invalid_argument("a picker holds at most 2^20 endpoints");
  }
  now_ = now;
  remainder_ = 0;
  slots_ = std::move(slots);
  weights_ = std::move(weights);
  eligible_at_ = std::move(eligible_at);
  if (now_ >= kRebaseAt) shift_clock();
  strides_.resize(slots_.size());
  total_ = 0;
  for (size_t k = 0; k < slots_.size(); ++k) {
    strides_[k] = kScale / weights_[k];
    total_ += weights_[k];
  }
  step_ = total_ ? kScale / total_ : 0;
  step_remainder_ = total_ ? kScale % total_ : 0;
  forgive_and_rebuild();
}

void Picker::forgive_and_rebuild() {
  eligible_.clear();
  waiting_.reset(now_);
  for (size_t k = 0; k < slots_.size(); ++k) {
    const auto index = static_cast<uint32_t>(k);
    if (eligible_at_[k] <= now_) {
      eligible_at_[k] = now_;  // no endpoint carries a claim into an update
      eligible_.add_unordered(make_entry(now_ + strides_[k], index));
    } else {
      waiting_.push(make_entry(eligible_at_[k], index));
    }
  }
  eligible_.heapify();
}

void Picker::promote() {
  waiting_.take_until(now_, [this](Entry entry) {
    const uint32_t index = entry_index(entry);
    eligible_.push(make_entry(eligible_at_[index] + strides_[index], index));
  });
}

int64_t Picker::pick() {
  std::lock_guard lock(mutex_);
  return pick_locked();
}

int64_t Picker::pick_locked() {
  if (slots_.empty()) return -1;
  if (eligible_.empty()) {  // every endpoint is ahead of the clock: jump to the first
    now_ = waiting_.min_key();
    remainder_ = 0;
    if (now_ >= kRebaseAt) rebase();
    promote();
  }
  const Entry top = eligible_.top();
  const uint32_t picked = entry_index(top);
  const int64_t next = entry_key(top);  // its deadline starts its next request
  eligible_at_[picked] = next;
  now_ += step_;
  remainder_ += step_remainder_;
  if (remainder_ >= total_) {
    remainder_ -= total_;
    ++now_;
  }
  bool replaced = next <= now_;
  if (replaced) {
    eligible_.replace_top(make_entry(next + strides_[picked], picked));
  } else {
    waiting_.push(make_entry(next, picked));
  }
  waiting_.take_until(now_, [&](Entry entry) {
    const uint32_t index = entry_index(entry);
    const Entry eligible = make_entry(eligible_at_[index] + strides_[index], index);
    if (replaced) {
      eligible_.push(eligible);
    } else {  // the first endpoint due takes the picked one's place: one sift, not two
      eligible_.replace_top(eligible);
      replaced = true;
    }
  });
  if (!replaced) eligible_.pop();
  if (now_ >= kRebaseAt) rebase();
  return slots_[picked];
}

void Picker::skip(int64_t count) {
  std::lock_guard lock(mutex_);
  for (int64_t k = 0; k < count; ++k) pick_locked();
}

size_t Picker::size() const {
  std::lock_guard lock(mutex_);
  return slots_.size();
}

int64_t Picker::shift_clock() {
  const int64_t amount = (now_ / kRebaseBy - 1) * kRebaseBy;  // the clock lands in [2^41, 2^42)
  now_ -= amount;
  for (int64_t& at : eligible_at_) at -= amount;
  shifted_ += static_cast<double>(amount);
  return amount;
}

void Picker::rebase() {
  const int64_t amount = shift_clock();
  eligible_.subtract(amount);
  waiting_.subtract(amount);
}

size_t Picker::index_of(int64_t slot) const {
  const auto found = std::lower_bound(slots_.begin(), slots_.end(), slot);
  if (found == slots_.end() || *found != slot) {
    throw std::out_of_range("no endpoint in slot " + std::to_string(slot));
  }
  return static_cast<size_t>(found - slots_.begin());
}

bool Picker::contains(int64_t slot) const {
  std::lock_guard lock(mutex_);
  return std::binary_search(slots_.begin(), slots_.end(), slot);
}

std::vector<std::pair<int64_t, int64_t>> Picker::weights() const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<int64_t, int64_t>> out;
  out.reserve(slots_.size());
  for (size_t k = 0; k < slots_.size(); ++k) out.emplace_back(slots_[k], weights_[k]);
  return out;
}

double Picker::lag(int64_t slot) const {
  std::lock_guard lock(mutex_);
  const size_t k = index_of(slot);
  const double behind = static_cast<double>(now_ - eligible_at_[k]) +
                        static_cast<double>(remainder_) / static_cast<double>(total_);
  return behind * static_cast<double>(weights_[k]) / static_cast<double>(kScale);
}

double Picker::virtual_time() const {
  std::lock_guard lock(mutex_);
  const double fraction = total_ ? static_cast<double>(remainder_) / static_cast<double>(total_) : 0.0;
  return (shifted_ + (static_cast<double>(now_) + fraction)) / static_cast<double>(kScale);
}

}  // namespace astra::gateway
