#include "wire.hpp"

#include <cstdint>

namespace astra::gateway {
namespace {

// Groups may nest; a deeper message is refused, as protobuf's default recursion limit does.
constexpr int kMaxDepth = 100;

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

class Reader {
 public:
  explicit Reader(std::string_view bytes)
      : at_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(at_ + bytes.size()) {}

  bool done() const { return at_ == end_; }

  bool varint(uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ == end_) return false;
      const uint8_t byte = *at_++;
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  }

  bool skip(uint64_t count) {
    if (count > static_cast<uint64_t>(end_ - at_)) return false;
    at_ += count;
    return true;
  }

  bool bytes(std::string_view& out) {
    uint64_t length;
    if (!varint(length) || length > static_cast<uint64_t>(end_ - at_)) return false;
    out = std::string_view(reinterpret_cast<const char*>(at_), length);
    at_ += length;
    return true;
  }

  // Skips the value of a field with `wire_type`; a group is skipped up to its end tag.
  bool skip_value(uint32_t field, uint32_t wire_type, int depth) {
    uint64_t ignored;
    std::string_view view;
    switch (wire_type) {
      case kVarint: return varint(ignored);
      case kFixed64: return skip(8);
      case kLengthDelimited: return bytes(view);
      case kFixed32: return skip(4);
      case kStartGroup: return skip_group(field, depth + 1);
      default: return false;  // an end tag with no group open, or wire types 6 and 7
    }
  }

  // Reads one tag; false at a malformed one.
  bool tag(uint32_t& field, uint32_t& wire_type) {
    uint64_t key;
    if (!varint(key) || key > 0xFFFFFFFFu) return false;
    field = static_cast<uint32_t>(key >> 3);
    wire_type = static_cast<uint32_t>(key & 7);
    return field != 0;
  }

 private:
  bool skip_group(uint32_t group, int depth) {
    if (depth > kMaxDepth) return false;
    while (!done()) {
      uint32_t field, wire_type;
      if (!tag(field, wire_type)) return false;
      if (wire_type == kEndGroup) return field == group;
      if (!skip_value(field, wire_type, depth)) return false;
    }
    return false;
  }

  const uint8_t* at_;
  const uint8_t* end_;
};

}  // namespace

bool read_model(std::string_view message, ModelRef& out) noexcept {
  Reader reader(message);
  out = ModelRef{};
  while (!reader.done()) {
    uint32_t field, wire_type;
    if (!reader.tag(field, wire_type)) return false;
    if (wire_type == kLengthDelimited && (field == 1 || field == 2)) {
      if (!reader.bytes(field == 1 ? out.name : out.version)) return false;
    } else if (!reader.skip_value(field, wire_type, 0)) {
      return false;
    }
  }
  return true;
}

}  // namespace astra::gateway
