#include "hpack.hpp"

#include <array>

namespace astra::gateway::hpack {
namespace {

struct Entry {
  std::string_view name;
  std::string_view value;
};

// RFC 7541 Appendix A.
constexpr std::array<Entry, 61> kStatic = {{
    {":authority", ""},
    {":method", "GET"},
    {":method", "POST"},
    {":path", "/"},
    {":path", "/index.html"},
    {":scheme", "http"},
    {":scheme", "https"},
    {":status", "200"},
    {":status", "204"},
    {":status", "206"},
    {":status", "304"},
    {":status", "400"},
    {":status", "404"},
    {":status", "500"},
    {"accept-charset", ""},
    {"accept-encoding", "gzip, deflate"},
    {"accept-language", ""},
    {"accept-ranges", ""},
    {"accept", ""},
    {"access-control-allow-origin", ""},
    {"age", ""},
    {"allow", ""},
    {"authorization", ""},
    {"cache-control", ""},
    {"content-disposition", ""},
    {"content-encoding", ""},
    {"content-language", ""},
    {"content-length", ""},
    {"content-location", ""},
    {"content-range", ""},
    {"content-type", ""},
    {"cookie", ""},
    {"date", ""},
    {"etag", ""},
    {"expect", ""},
    {"expires", ""},
    {"from", ""},
    {"host", ""},
    {"if-match", ""},
    {"if-modified-since", ""},
    {"if-none-match", ""},
    {"if-range", ""},
    {"if-unmodified-since", ""},
    {"last-modified", ""},
    {"link", ""},
    {"location", ""},
    {"max-forwards", ""},
    {"proxy-authenticate", ""},
    {"proxy-authorization", ""},
    {"range", ""},
    {"referer", ""},
    {"refresh", ""},
    {"retry-after", ""},
    {"server", ""},
    {"set-cookie", ""},
    {"strict-transport-security", ""},
    {"transfer-encoding", ""},
    {"user-agent", ""},
    {"vary", ""},
    {"via", ""},
    {"www-authenticate", ""},
}};

struct Code {
  uint32_t bits;  // right-aligned
  uint8_t length;
};

// RFC 7541 Appendix B: the code of each symbol, 256 being EOS.
constexpr std::array<Code, 257> kCodes = {{
    {0x1ff8, 13}, {0x7fffd8, 23}, {0xfffffe2, 28}, {0xfffffe3, 28}, {0xfffffe4, 28}, {0xfffffe5, 28},
    {0xfffffe6, 28}, {0xfffffe7, 28}, {0xfffffe8, 28}, {0xffffea, 24}, {0x3ffffffc, 30}, {0xfffffe9, 28},
    {0xfffffea, 28}, {0x3ffffffd, 30}, {0xfffffeb, 28}, {0xfffffec, 28}, {0xfffffed, 28}, {0xfffffee, 28},
    {0xfffffef, 28}, {0xffffff0, 28}, {0xffffff1, 28}, {0xffffff2, 28}, {0x3ffffffe, 30}, {0xffffff3, 28},
    {0xffffff4, 28}, {0xffffff5, 28}, {0xffffff6, 28}, {0xffffff7, 28}, {0xffffff8, 28}, {0xffffff9, 28},
    {0xffffffa, 28}, {0xffffffb, 28}, {0x14, 6}, {0x3f8, 10}, {0x3f9, 10}, {0xffa, 12},
    {0x1ff9, 13}, {0x15, 6}, {0xf8, 8}, {0x7fa, 11}, {0x3fa, 10}, {0x3fb, 10},
    {0xf9, 8}, {0x7fb, 11}, {0xfa, 8}, {0x16, 6}, {0x17, 6}, {0x18, 6},
    {0x0, 5}, {0x1, 5}, {0x2, 5}, {0x19, 6}, {0x1a, 6}, {0x1b, 6},
    {0x1c, 6}, {0x1d, 6}, {0x1e, 6}, {0x1f, 6}, {0x5c, 7}, {0xfb, 8},
    {0x7ffc, 15}, {0x20, 6}, {0xffb, 12}, {0x3fc, 10}, {0x1ffa, 13}, {0x21, 6},
    {0x5d, 7}, {0x5e, 7}, {0x5f, 7}, {0x60, 7}, {0x61, 7}, {0x62, 7},
    {0x63, 7}, {0x64, 7}, {0x65, 7}, {0x66, 7}, {0x67, 7}, {0x68, 7},
    {0x69, 7}, {0x6a, 7}, {0x6b, 7}, {0x6c, 7}, {0x6d, 7}, {0x6e, 7},
    {0x6f, 7}, {0x70, 7}, {0x71, 7}, {0x72, 7}, {0xfc, 8}, {0x73, 7},
    {0xfd, 8}, {0x1ffb, 13}, {0x7fff0, 19}, {0x1ffc, 13}, {0x3ffc, 14}, {0x22, 6},
    {0x7ffd, 15}, {0x3, 5}, {0x23, 6}, {0x4, 5}, {0x24, 6}, {0x5, 5},
    {0x25, 6}, {0x26, 6}, {0x27, 6}, {0x6, 5}, {0x74, 7}, {0x75, 7},
    {0x28, 6}, {0x29, 6}, {0x2a, 6}, {0x7, 5}, {0x2b, 6}, {0x76, 7},
    {0x2c, 6}, {0x8, 5}, {0x9, 5}, {0x2d, 6}, {0x77, 7}, {0x78, 7},
    {0x79, 7}, {0x7a, 7}, {0x7b, 7}, {0x7ffe, 15}, {0x7fc, 11}, {0x3ffd, 14},
    {0x1ffd, 13}, {0xffffffc, 28}, {0xfffe6, 20}, {0x3fffd2, 22}, {0xfffe7, 20}, {0xfffe8, 20},
    {0x3fffd3, 22}, {0x3fffd4, 22}, {0x3fffd5, 22}, {0x7fffd9, 23}, {0x3fffd6, 22}, {0x7fffda, 23},
    {0x7fffdb, 23}, {0x7fffdc, 23}, {0x7fffdd, 23}, {0x7fffde, 23}, {0xffffeb, 24}, {0x7fffdf, 23},
    {0xffffec, 24}, {0xffffed, 24}, {0x3fffd7, 22}, {0x7fffe0, 23}, {0xffffee, 24}, {0x7fffe1, 23},
    {0x7fffe2, 23}, {0x7fffe3, 23}, {0x7fffe4, 23}, {0x1fffdc, 21}, {0x3fffd8, 22}, {0x7fffe5, 23},
    {0x3fffd9, 22}, {0x7fffe6, 23}, {0x7fffe7, 23}, {0xffffef, 24}, {0x3fffda, 22}, {0x1fffdd, 21},
    {0xfffe9, 20}, {0x3fffdb, 22}, {0x3fffdc, 22}, {0x7fffe8, 23}, {0x7fffe9, 23}, {0x1fffde, 21},
    {0x7fffea, 23}, {0x3fffdd, 22}, {0x3fffde, 22}, {0xfffff0, 24}, {0x1fffdf, 21}, {0x3fffdf, 22},
    {0x7fffeb, 23}, {0x7fffec, 23}, {0x1fffe0, 21}, {0x1fffe1, 21}, {0x3fffe0, 22}, {0x1fffe2, 21},
    {0x7fffed, 23}, {0x3fffe1, 22}, {0x7fffee, 23}, {0x7fffef, 23}, {0xfffea, 20}, {0x3fffe2, 22},
    {0x3fffe3, 22}, {0x3fffe4, 22}, {0x7ffff0, 23}, {0x3fffe5, 22}, {0x3fffe6, 22}, {0x7ffff1, 23},
    {0x3ffffe0, 26}, {0x3ffffe1, 26}, {0xfffeb, 20}, {0x7fff1, 19}, {0x3fffe7, 22}, {0x7ffff2, 23},
    {0x3fffe8, 22}, {0x1ffffec, 25}, {0x3ffffe2, 26}, {0x3ffffe3, 26}, {0x3ffffe4, 26}, {0x7ffffde, 27},
    {0x7ffffdf, 27}, {0x3ffffe5, 26}, {0xfffff1, 24}, {0x1ffffed, 25}, {0x7fff2, 19}, {0x1fffe3, 21},
    {0x3ffffe6, 26}, {0x7ffffe0, 27}, {0x7ffffe1, 27}, {0x3ffffe7, 26}, {0x7ffffe2, 27}, {0xfffff2, 24},
    {0x1fffe4, 21}, {0x1fffe5, 21}, {0x3ffffe8, 26}, {0x3ffffe9, 26}, {0xffffffd, 28}, {0x7ffffe3, 27},
    {0x7ffffe4, 27}, {0x7ffffe5, 27}, {0xfffec, 20}, {0xfffff3, 24}, {0xfffed, 20}, {0x1fffe6, 21},
    {0x3fffe9, 22}, {0x1fffe7, 21}, {0x1fffe8, 21}, {0x7ffff3, 23}, {0x3fffea, 22}, {0x3fffeb, 22},
    {0x1ffffee, 25}, {0x1ffffef, 25}, {0xfffff4, 24}, {0xfffff5, 24}, {0x3ffffea, 26}, {0x7ffff4, 23},
    {0x3ffffeb, 26}, {0x7ffffe6, 27}, {0x3ffffec, 26}, {0x3ffffed, 26}, {0x7ffffe7, 27}, {0x7ffffe8, 27},
    {0x7ffffe9, 27}, {0x7ffffea, 27}, {0x7ffffeb, 27}, {0xffffffe, 28}, {0x7ffffec, 27}, {0x7ffffed, 27},
    {0x7ffffee, 27}, {0x7ffffef, 27}, {0x7fffff0, 27}, {0x3ffffee, 26}, {0x3fffffff, 30},
}};

// The code as a binary tree: node 0 is the root; child >= 0 is a node, < 0 is the leaf
// of symbol -child - 1. Built once, 256 inner nodes.
struct Tree {
  std::array<std::array<int16_t, 2>, 256> next{};
  Tree() {
    int16_t nodes = 1;
    for (int symbol = 0; symbol < 257; ++symbol) {
      const Code code = kCodes[symbol];
      int16_t node = 0;
      for (int bit = code.length - 1; bit > 0; --bit) {
        int16_t& child = next[node][(code.bits >> bit) & 1];
        if (child == 0) child = nodes++;
        node = child;
      }
      next[node][code.bits & 1] = static_cast<int16_t>(-symbol - 1);
    }
  }
};

const Tree kTree;

// Reads an integer with an N-bit prefix (section 5.1) at `pos`. False when truncated or
// over 2^32.
bool read_int(std::string_view in, size_t& pos, int prefix, uint64_t& value) {
  if (pos >= in.size()) return false;
  const uint64_t mask = (1u << prefix) - 1;
  value = static_cast<uint8_t>(in[pos++]) & mask;
  if (value < mask) return true;
  for (int shift = 0; shift <= 28; shift += 7) {
    if (pos >= in.size()) return false;
    const auto byte = static_cast<uint8_t>(in[pos++]);
    value += static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value <= UINT32_MAX;
  }
  return false;
}

bool read_string(std::string_view in, size_t& pos, std::string& out) {
  if (pos >= in.size()) return false;
  const bool huffman = static_cast<uint8_t>(in[pos]) & 0x80;
  uint64_t length;
  if (!read_int(in, pos, 7, length) || length > in.size() - pos) return false;
  const std::string_view text = in.substr(pos, length);
  pos += length;
  out.clear();
  if (huffman) return huffman_decode(text, out);
  out.assign(text);
  return true;
}

void write_int(std::string& out, uint8_t first, int prefix, uint64_t value) {
  const uint64_t mask = (1u << prefix) - 1;
  if (value < mask) {
    out.push_back(static_cast<char>(first | value));
    return;
  }
  out.push_back(static_cast<char>(first | mask));
  for (value -= mask; value >= 0x80; value >>= 7) out.push_back(static_cast<char>(0x80 | (value & 0x7f)));
  out.push_back(static_cast<char>(value));
}

void write_string(std::string& out, std::string_view text) {
  write_int(out, 0, 7, text.size());
  out.append(text);
}

}  // namespace

bool huffman_decode(std::string_view in, std::string& out) {
  int16_t node = 0;
  int pending = 0;  // bits read since the last symbol
  bool ones = true;  // and all of them were 1
  for (const char c : in) {
    const auto byte = static_cast<uint8_t>(c);
    for (int bit = 7; bit >= 0; --bit) {
      const int value = (byte >> bit) & 1;
      const int16_t child = kTree.next[node][value];
      ++pending;
      ones = ones && value;
      if (child >= 0) {
        node = child;
        continue;
      }
      const int symbol = -child - 1;
      if (symbol == 256) return false;
      out.push_back(static_cast<char>(symbol));
      node = 0;
      pending = 0;
      ones = true;
    }
  }
  return pending <= 7 && ones;
}

bool Decoder::field(size_t index, Header& out) const {
  if (index == 0) return false;
  if (index <= kStatic.size()) {
    out.first.assign(kStatic[index - 1].name);
    out.second.assign(kStatic[index - 1].value);
    return true;
  }
  index -= kStatic.size() + 1;
  if (index >= table_.size()) return false;
  out = table_[index];
  return true;
}

void Decoder::evict() {
  while (size_ > max_size_) {
    size_ -= table_.back().first.size() + table_.back().second.size() + 32;
    table_.pop_back();
  }
}

void Decoder::insert(Header header) {
  const size_t size = header.first.size() + header.second.size() + 32;
  if (size > max_size_) {  // section 4.4: the table empties
    table_.clear();
    size_ = 0;
    return;
  }
  size_ += size;
  table_.push_front(std::move(header));
  evict();
}

bool Decoder::decode(std::string_view block, Headers& out) {
  size_t pos = 0;
  bool fields = false;  // a table size update may only come before the first field
  while (pos < block.size()) {
    const auto first = static_cast<uint8_t>(block[pos]);
    uint64_t index;
    Header header;
    if (first & 0x80) {  // indexed field (6.1)
      if (!read_int(block, pos, 7, index) || !field(index, header)) return false;
      out.push_back(std::move(header));
      fields = true;
      continue;
    }
    if ((first & 0xe0) == 0x20) {  // dynamic table size update (6.3)
      if (fields || !read_int(block, pos, 5, index) || index > limit_) return false;
      max_size_ = index;
      evict();
      continue;
    }
    const bool indexing = (first & 0xc0) == 0x40;  // 6.2.1; else 6.2.2 / 6.2.3
    if (!read_int(block, pos, indexing ? 6 : 4, index)) return false;
    if (index == 0) {
      if (!read_string(block, pos, header.first)) return false;
    } else {
      Header named;
      if (!field(index, named)) return false;
      header.first = std::move(named.first);
    }
    if (!read_string(block, pos, header.second)) return false;
    if (indexing) insert(header);
    out.push_back(std::move(header));
    fields = true;
  }
  return true;
}

void encode(const Headers& headers, std::string& out) {
  for (const auto& [name, value] : headers) {
    size_t named = 0;
    bool whole = false;
    for (size_t k = 0; k < kStatic.size() && !whole; ++k) {
      if (kStatic[k].name != name) continue;
      if (!named) named = k + 1;
      if (kStatic[k].value == value && !value.empty()) {
        named = k + 1;
        whole = true;
      }
    }
    if (whole) {
      write_int(out, 0x80, 7, named);
      continue;
    }
    write_int(out, 0x00, 4, named);  // literal without indexing
    if (!named) write_string(out, name);
    write_string(out, value);
  }
}

}  // namespace astra::gateway::hpack
