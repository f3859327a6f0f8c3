// HPACK (RFC 7541): header blocks of HTTP/2, decoded with the dynamic table and Huffman
// strings, encoded as literals that never touch the peer's dynamic table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace astra::gateway::hpack {

using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

// Decodes Huffman-coded `in` (RFC 7541 section 5.2 and Appendix B) onto `out`. False on
// an EOS symbol, padding longer than 7 bits or not all ones. O(bits).
bool huffman_decode(std::string_view in, std::string& out);

// One connection's decoder: its dynamic table lives across header blocks.
class Decoder {
 public:
  // `max_size` is the table size this side advertised (SETTINGS_HEADER_TABLE_SIZE).
  explicit Decoder(size_t max_size = 4096) : limit_(max_size), max_size_(max_size) {}
  // Appends the fields of one complete header block to `out`. False on a malformed
  // block (a COMPRESSION_ERROR of the connection). O(block size + fields).
  bool decode(std::string_view block, Headers& out);
  size_t table_size() const { return size_; }
  size_t table_entries() const { return table_.size(); }

 private:
  bool field(size_t index, Header& out) const;
  void insert(Header header);
  void evict();

  std::deque<Header> table_;  // newest first
  size_t size_ = 0;           // RFC 7541 section 4.1: name + value + 32 per entry
  size_t limit_;              // the advertised maximum
  size_t max_size_;           // the current maximum, as the encoder last set it
};

// Appends `headers` to `out` as one header block: a field with a static-table name and
// value (`:status: 200`, ...) indexed, the others literals without indexing, with the
// name indexed when the static table has it. Uses no dynamic table. O(block size).
void encode(const Headers& headers, std::string& out);

}  // namespace astra::gateway::hpack
