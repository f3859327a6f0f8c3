// One HTTP/2 connection (RFC 9113), either side, without its socket: bytes read are fed
// in, bytes to write come out of output(). It answers SETTINGS and PING, keeps flow
// control both ways (the windows it receives on are replenished as data arrives; what it
// sends waits for the peer's windows and is cut to the peer's frame size), reassembles
// header blocks across CONTINUATION frames and decodes them with HPACK. What a stream
// carries goes to a Handler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hpack.hpp"

namespace astra::gateway::h2 {

using hpack::Headers;

inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum Error : uint32_t {
  kNoError = 0,
  kProtocolError = 1,
  kInternalError = 2,
  kFlowControlError = 3,
  kStreamClosed = 5,
  kFrameSizeError = 6,
  kRefusedStream = 7,
  kCancel = 8,
  kCompressionError = 9,
  kEnhanceYourCalm = 11,
};

class Connection;

// What a connection's streams carry, for its owner. Calls come from inside receive().
class Handler {
 public:
  virtual ~Handler() = default;
  // A header block: a request's headers (a new stream, on the server side), a response's
  // headers, or trailers.
  virtual void on_headers(Connection& connection, uint32_t stream, Headers headers, bool end) = 0;
  virtual void on_data(Connection& connection, uint32_t stream, std::string_view data, bool end) = 0;
  // The peer reset the stream; the connection has forgotten it.
  virtual void on_reset(Connection& connection, uint32_t stream, uint32_t error) = 0;
  // The peer sent GOAWAY: streams above `last_stream` were never processed (forgotten).
  virtual void on_goaway(Connection& connection, uint32_t last_stream) = 0;
};

class Connection {
 public:
  enum class Side { kClient, kServer };
  // The windows this side receives on: its streams' and the connection's.
  static constexpr int64_t kStreamWindow = int64_t{1} << 24;
  static constexpr int64_t kConnectionWindow = int64_t{1} << 30;

  // Queues this side's preface (the client's magic, then SETTINGS).
  Connection(Side side, Handler& handler);

  // Feeds bytes read from the socket. False on a connection error: GOAWAY is queued,
  // the owner writes what is queued and closes. O(bytes + frames).
  bool receive(std::string_view bytes);

  // Client side: a new stream's id, or 0 when the ids ran out or the peer sent GOAWAY.
  uint32_t open();
  // Queues a header block. Trailers (the last block, `end`) wait for the stream's
  // queued data. The stream is forgotten once both sides have ended it.
  void send_headers(uint32_t stream, const Headers& headers, bool end);
  // Queues data, sent as the peer's windows allow.
  void send_data(uint32_t stream, std::string_view data, bool end);
  // Resets a stream and forgets it.
  void reset(uint32_t stream, uint32_t error);
  // Says no new stream will be taken (server side: above the last one seen).
  void goaway(uint32_t error);

  std::string& output() { return out_; }
  bool failed() const { return failed_; }
  bool going_away() const { return going_away_; }  // the peer sent GOAWAY
  size_t streams() const { return streams_.size(); }
  // How many streams the peer takes at once (SETTINGS_MAX_CONCURRENT_STREAMS).
  uint32_t peer_max_streams() const { return peer_max_streams_; }
  bool has(uint32_t stream) const { return streams_.count(stream) != 0; }

 private:
  struct Stream {
    int64_t send_window = 65535;
    int64_t receive_unacked = 0;  // bytes received and not yet given back
    std::string pending;          // data waiting for a window
    size_t offset = 0;            // of pending, already sent
    bool pending_end = false;     // END_STREAM goes with the last of pending
    bool has_trailers = false;    // trailers wait behind pending
    Headers trailers;
    bool blocked = false;         // in blocked_
    bool sent_end = false;
    bool received_end = false;
  };

  Stream fresh_stream() const;
  bool frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload);
  bool on_headers_frame(uint8_t flags, uint32_t stream, std::string_view payload);
  bool header_block_done();
  bool on_data_frame(uint8_t flags, uint32_t stream, std::string_view payload);
  bool on_settings(uint8_t flags, uint32_t stream, std::string_view payload);
  bool on_window_update(uint32_t stream, std::string_view payload);
  bool fail(uint32_t error);
  void write_frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload);
  void write_headers(uint32_t stream, const Headers& headers, bool end);
  // Sends what waits on `stream` as the windows allow; true when nothing is left.
  bool flush(uint32_t stream, Stream& state);
  void flush_blocked();
  // Forgets `stream` once both sides ended it (a server's complete response ends it
  // with RST_STREAM NO_ERROR when the request is still open).
  void check_ended(uint32_t stream);
  void reset_unknown(uint32_t stream, uint32_t error);
  void give_back(uint32_t stream, Stream* state, size_t bytes);

  Side side_;
  Handler& handler_;
  hpack::Decoder decoder_;
  std::unordered_map<uint32_t, Stream> streams_;
  std::vector<uint32_t> blocked_;  // streams with data waiting for a window
  std::string in_;                 // bytes of an incomplete frame
  std::string out_;
  std::string block_;              // a header block being reassembled
  uint32_t block_stream_ = 0;      // its stream, while CONTINUATION frames are due
  bool block_end_ = false;         // its HEADERS frame had END_STREAM
  bool preface_ = false;           // server side: the client's magic was read
  bool failed_ = false;
  bool going_away_ = false;
  bool sent_goaway_ = false;
  uint32_t next_stream_ = 1;       // client side
  uint32_t last_peer_stream_ = 0;  // server side
  int64_t send_window_ = 65535;    // the connection's, ours to spend
  int64_t receive_unacked_ = 0;
  int64_t peer_initial_window_ = 65535;
  uint32_t peer_max_frame_ = 16384;
  uint32_t peer_max_streams_ = UINT32_MAX;
};

}  // namespace astra::gateway::h2
