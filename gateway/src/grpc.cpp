#include "grpc.hpp"

#include <utility>

namespace astra::gateway::grpc {

int reset_status(uint32_t error) {
  switch (error) {
    case h2::kRefusedStream:
      return kUnavailable;
    case h2::kCancel:
      return kCancelled;
    case h2::kEnhanceYourCalm:
      return kResourceExhausted;
    default:
      return kInternal;
  }
}

const std::string* find(const h2::Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

int64_t parse_timeout(const std::string* text) {
  if (text == nullptr || text->size() < 2 || text->size() > 9) return -1;
  int64_t value = 0;
  for (size_t k = 0; k + 1 < text->size(); ++k) {
    const char c = (*text)[k];
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  switch (text->back()) {
    case 'H': return value * 3600'000'000'000;
    case 'M': return value * 60'000'000'000;
    case 'S': return value * 1'000'000'000;
    case 'm': return value * 1'000'000;
    case 'u': return value * 1'000;
    case 'n': return value;
    default: return -1;
  }
}

std::string format_timeout(int64_t nanos) {
  constexpr int64_t kLimit = 100'000'000;
  const std::pair<int64_t, char> units[] = {{1, 'n'}, {1'000, 'u'}, {1'000'000, 'm'}, {1'000'000'000, 'S'}};
  for (const auto& [size, unit] : units) {
    const int64_t count = (nanos + size - 1) / size;
    if (count < kLimit) return std::to_string(count) + unit;
  }
  return std::to_string((nanos / 1'000'000'000 + 3599) / 3600) + 'H';
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    if (byte >= 0x20 && byte <= 0x7e && byte != '%') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 15]);
    }
  }
  return out;
}

}  // namespace astra::gateway::grpc
