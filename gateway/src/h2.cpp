#include "h2.hpp"

#include <algorithm>

namespace astra::gateway::h2 {
namespace {

enum Type : uint8_t {
  kData = 0,
  kHeaders = 1,
  kPriority = 2,
  kRstStream = 3,
  kSettings = 4,
  kPushPromise = 5,
  kPing = 6,
  kGoaway = 7,
  kWindowUpdate = 8,
  kContinuation = 9,
};

enum Flag : uint8_t {
  kEndStream = 0x1,
  kAck = 0x1,
  kEndHeaders = 0x4,
  kPadded = 0x8,
  kPriorityFlag = 0x20,
};

enum Setting : uint16_t {
  kEnablePush = 2,
  kMaxConcurrentStreams = 3,
  kInitialWindowSize = 4,
  kMaxFrameSize = 5,
};

// The largest frame this side takes (it never raises SETTINGS_MAX_FRAME_SIZE).
constexpr uint32_t kMaxFrame = 16384;
constexpr int64_t kMaxWindow = (int64_t{1} << 31) - 1;

uint32_t be32(std::string_view bytes, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(bytes[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 3]));
}

void put32(std::string& out, uint32_t value) {
  out.push_back(static_cast<char>(value >> 24));
  out.push_back(static_cast<char>(value >> 16));
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value));
}

void put_setting(std::string& out, uint16_t id, uint32_t value) {
  out.push_back(static_cast<char>(id >> 8));
  out.push_back(static_cast<char>(id));
  put32(out, value);
}

// Strips a frame's padding; false when the padding is longer than the frame.
bool unpad(uint8_t flags, std::string_view& payload) {
  if (!(flags & kPadded)) return true;
  if (payload.empty()) return false;
  const auto pad = static_cast<uint8_t>(payload[0]);
  if (pad >= payload.size()) return false;
  payload = payload.substr(1, payload.size() - 1 - pad);
  return true;
}

}  // namespace

Connection::Connection(Side side, Handler& handler) : side_(side), handler_(handler) {
  if (side_ == Side::kClient) out_.append(kPreface);
  std::string settings;
  if (side_ == Side::kClient) put_setting(settings, kEnablePush, 0);
  put_setting(settings, kInitialWindowSize, static_cast<uint32_t>(kStreamWindow));
  write_frame(kSettings, 0, 0, settings);
  std::string increment;
  put32(increment, static_cast<uint32_t>(kConnectionWindow - 65535));
  write_frame(kWindowUpdate, 0, 0, increment);
}

Connection::Stream Connection::fresh_stream() const {
  Stream stream;
  stream.send_window = peer_initial_window_;
  return stream;
}

bool Connection::receive(std::string_view bytes) {
  if (failed_) return false;
  std::string buffered;
  std::string_view data = bytes;
  if (!in_.empty()) {
    buffered = std::move(in_);
    buffered.append(bytes);
    data = buffered;
  }
  in_.clear();
  size_t pos = 0;
  if (side_ == Side::kServer && !preface_) {
    const size_t have = std::min(data.size(), kPreface.size());
    if (data.substr(0, have) != kPreface.substr(0, have)) return fail(kProtocolError);
    if (have < kPreface.size()) {
      in_.assign(data);
      return true;
    }
    preface_ = true;
    pos = kPreface.size();
  }
  while (data.size() - pos >= 9) {
    const uint32_t length = be32(data, pos) >> 8;
    const auto type = static_cast<uint8_t>(data[pos + 3]);
    const auto flags = static_cast<uint8_t>(data[pos + 4]);
    const uint32_t stream = be32(data, pos + 5) & 0x7fffffff;
    if (length > kMaxFrame) return fail(kFrameSizeError);
    if (data.size() - pos - 9 < length) break;
    const std::string_view payload = data.substr(pos + 9, length);
    pos += 9 + length;
    if (!frame(type, flags, stream, payload)) return false;
  }
  in_.assign(data.substr(pos));
  return true;
}

bool Connection::frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  if (block_stream_ != 0 && (type != kContinuation || stream != block_stream_)) {
    return fail(kProtocolError);  // a header block is one unbroken run of frames
  }
  switch (type) {
    case kData:
      return on_data_frame(flags, stream, payload);
    case kHeaders:
      return on_headers_frame(flags, stream, payload);
    case kContinuation:
      if (block_stream_ == 0) return fail(kProtocolError);
      block_.append(payload);
      return !(flags & kEndHeaders) || header_block_done();
    case kSettings:
      return on_settings(flags, stream, payload);
    case kWindowUpdate:
      return on_window_update(stream, payload);
    case kPing:
      if (stream != 0) return fail(kProtocolError);
      if (payload.size() != 8) return fail(kFrameSizeError);
      if (!(flags & kAck)) write_frame(kPing, kAck, 0, payload);
      return true;
    case kRstStream: {
      if (stream == 0) return fail(kProtocolError);
      if (payload.size() != 4) return fail(kFrameSizeError);
      if (streams_.erase(stream)) handler_.on_reset(*this, stream, be32(payload, 0));
      return true;
    }
    case kGoaway: {
      if (stream != 0) return fail(kProtocolError);
      if (payload.size() < 8) return fail(kFrameSizeError);
      const uint32_t last = be32(payload, 0) & 0x7fffffff;
      going_away_ = true;
      if (side_ == Side::kClient) {
        std::erase_if(streams_, [last](const auto& entry) { return entry.first > last; });
      }
      handler_.on_goaway(*this, last);
      return true;
    }
    case kPushPromise:  // push is off (SETTINGS_ENABLE_PUSH 0; servers never get one)
      return fail(kProtocolError);
    default:  // PRIORITY and unknown types are ignored
      return true;
  }
}

bool Connection::on_headers_frame(uint8_t flags, uint32_t stream, std::string_view payload) {
  if (stream == 0 || !unpad(flags, payload)) return fail(kProtocolError);
  if (flags & kPriorityFlag) {
    if (payload.size() < 5) return fail(kFrameSizeError);
    payload.remove_prefix(5);
  }
  block_.assign(payload);
  block_stream_ = stream;
  block_end_ = flags & kEndStream;
  return !(flags & kEndHeaders) || header_block_done();
}

bool Connection::header_block_done() {
  Headers headers;
  if (!decoder_.decode(block_, headers)) return fail(kCompressionError);
  const uint32_t stream = block_stream_;
  const bool end = block_end_;
  block_stream_ = 0;
  block_.clear();
  auto found = streams_.find(stream);
  if (found == streams_.end()) {
    if (side_ == Side::kClient || stream <= last_peer_stream_) return true;  // one we reset
    if (stream % 2 == 0) return fail(kProtocolError);
    last_peer_stream_ = stream;
    if (sent_goaway_) {
      reset_unknown(stream, kRefusedStream);
      return true;
    }
    found = streams_.emplace(stream, fresh_stream()).first;
  }
  if (end) found->second.received_end = true;
  handler_.on_headers(*this, stream, std::move(headers), end);
  if (end) check_ended(stream);
  return true;
}

bool Connection::on_data_frame(uint8_t flags, uint32_t stream, std::string_view payload) {
  if (stream == 0) return fail(kProtocolError);
  const size_t length = payload.size();
  if (!unpad(flags, payload)) return fail(kProtocolError);
  const bool end = flags & kEndStream;
  const auto found = streams_.find(stream);
  give_back(stream, found == streams_.end() || end ? nullptr : &found->second, length);
  if (found == streams_.end()) return true;  // a stream this side reset
  if (end) found->second.received_end = true;
  handler_.on_data(*this, stream, payload, end);
  if (end) check_ended(stream);
  return true;
}

void Connection::give_back(uint32_t stream, Stream* state, size_t bytes) {
  receive_unacked_ += static_cast<int64_t>(bytes);
  std::string increment;
  if (receive_unacked_ >= kConnectionWindow / 2) {
    put32(increment, static_cast<uint32_t>(receive_unacked_));
    write_frame(kWindowUpdate, 0, 0, increment);
    receive_unacked_ = 0;
  }
  if (state == nullptr) return;
  state->receive_unacked += static_cast<int64_t>(bytes);
  if (state->receive_unacked >= kStreamWindow / 2) {
    increment.clear();
    put32(increment, static_cast<uint32_t>(state->receive_unacked));
    write_frame(kWindowUpdate, 0, stream, increment);
    state->receive_unacked = 0;
  }
}

bool Connection::on_settings(uint8_t flags, uint32_t stream, std::string_view payload) {
  if (stream != 0) return fail(kProtocolError);
  if (flags & kAck) return payload.empty() || fail(kFrameSizeError);
  if (payload.size() % 6) return fail(kFrameSizeError);
  for (size_t at = 0; at < payload.size(); at += 6) {
    const uint16_t id = static_cast<uint16_t>((static_cast<uint8_t>(payload[at]) << 8) |
                                              static_cast<uint8_t>(payload[at + 1]));
    const uint32_t value = be32(payload, at + 2);
    if (id == kEnablePush && value > 1) return fail(kProtocolError);
    if (id == kMaxConcurrentStreams) peer_max_streams_ = value;
    if (id == kInitialWindowSize) {
      if (value > kMaxWindow) return fail(kFlowControlError);
      const int64_t delta = static_cast<int64_t>(value) - peer_initial_window_;
      for (auto& entry : streams_) entry.second.send_window += delta;
      peer_initial_window_ = value;
    }
    if (id == kMaxFrameSize) {
      if (value < 16384 || value > (1u << 24) - 1) return fail(kProtocolError);
      peer_max_frame_ = value;
    }
  }
  write_frame(kSettings, kAck, 0, {});
  flush_blocked();
  return true;
}

bool Connection::on_window_update(uint32_t stream, std::string_view payload) {
  if (payload.size() != 4) return fail(kFrameSizeError);
  const uint32_t increment = be32(payload, 0) & 0x7fffffff;
  if (stream == 0) {
    if (increment == 0) return fail(kProtocolError);
    send_window_ += increment;
    if (send_window_ > kMaxWindow) return fail(kFlowControlError);
    flush_blocked();
    return true;
  }
  const auto found = streams_.find(stream);
  if (found == streams_.end()) return true;
  if (increment == 0) {
    reset(stream, kProtocolError);
    return true;
  }
  found->second.send_window += increment;
  if (found->second.blocked && flush(stream, found->second)) {
    found->second.blocked = false;
    check_ended(stream);
  }
  return true;
}

bool Connection::fail(uint32_t error) {
  std::string payload;
  put32(payload, last_peer_stream_);
  put32(payload, error);
  write_frame(kGoaway, 0, 0, payload);
  failed_ = true;
  return false;
}

uint32_t Connection::open() {
  if (side_ != Side::kClient || going_away_ || next_stream_ > 0x7ffffffd) return 0;
  const uint32_t stream = next_stream_;
  next_stream_ += 2;
  streams_.emplace(stream, fresh_stream());
  return stream;
}

void Connection::write_frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  put32(out_, static_cast<uint32_t>(payload.size()) << 8 | type);
  out_.push_back(static_cast<char>(flags));
  put32(out_, stream);
  out_.append(payload);
}

void Connection::write_headers(uint32_t stream, const Headers& headers, bool end) {
  std::string block;
  hpack::encode(headers, block);
  std::string_view rest = block;
  uint8_t type = kHeaders;
  uint8_t flags = end ? kEndStream : 0;
  do {
    const std::string_view piece = rest.substr(0, peer_max_frame_);
    rest.remove_prefix(piece.size());
    write_frame(type, flags | (rest.empty() ? kEndHeaders : 0), stream, piece);
    type = kContinuation;
    flags = 0;
  } while (!rest.empty());
}

void Connection::send_headers(uint32_t stream, const Headers& headers, bool end) {
  const auto found = streams_.find(stream);
  if (found == streams_.end()) return;
  Stream& state = found->second;
  if (end && (state.blocked || state.offset < state.pending.size())) {
    state.has_trailers = true;
    state.trailers = headers;
    return;
  }
  write_headers(stream, headers, end);
  if (end) {
    state.sent_end = true;
    check_ended(stream);
  }
}

void Connection::send_data(uint32_t stream, std::string_view data, bool end) {
  const auto found = streams_.find(stream);
  if (found == streams_.end()) return;
  Stream& state = found->second;
  state.pending.append(data);
  state.pending_end = state.pending_end || end;
  if (state.blocked) return;
  if (!flush(stream, state)) {
    state.blocked = true;
    blocked_.push_back(stream);
    return;
  }
  check_ended(stream);
}

bool Connection::flush(uint32_t stream, Stream& state) {
  for (;;) {
    const size_t left = state.pending.size() - state.offset;
    const bool end_here = state.pending_end && !state.has_trailers;
    if (left == 0 && !(end_here && !state.sent_end)) break;
    const int64_t window = std::max<int64_t>(0, std::min(send_window_, state.send_window));
    const size_t size = std::min<size_t>({left, peer_max_frame_, static_cast<size_t>(window)});
    if (left > 0 && size == 0) return false;
    const std::string_view chunk(state.pending.data() + state.offset, size);
    state.offset += size;
    send_window_ -= static_cast<int64_t>(size);
    state.send_window -= static_cast<int64_t>(size);
    const bool last = state.offset == state.pending.size();
    const bool ends = last && end_here;
    write_frame(kData, ends ? kEndStream : 0, stream, chunk);
    if (last) {
      state.pending.clear();
      state.offset = 0;
      if (ends) state.sent_end = true;
      if (state.pending_end) state.pending_end = false;
      break;
    }
  }
  if (state.has_trailers) {
    write_headers(stream, state.trailers, true);
    state.has_trailers = false;
    state.trailers.clear();
    state.sent_end = true;
  }
  return true;
}

void Connection::flush_blocked() {
  std::vector<uint32_t> blocked;
  blocked.swap(blocked_);
  for (const uint32_t stream : blocked) {
    const auto found = streams_.find(stream);
    if (found == streams_.end()) continue;
    if (!flush(stream, found->second)) {
      blocked_.push_back(stream);
      continue;
    }
    found->second.blocked = false;
    check_ended(stream);
  }
}

void Connection::check_ended(uint32_t stream) {
  const auto found = streams_.find(stream);
  if (found == streams_.end()) return;
  const Stream& state = found->second;
  if (!state.sent_end) return;
  if (!state.received_end) {
    if (side_ == Side::kClient) return;
    // RFC 9113 8.1: a complete response ends the request too.
    std::string payload;
    put32(payload, kNoError);
    write_frame(kRstStream, 0, stream, payload);
  }
  streams_.erase(found);
}

void Connection::reset(uint32_t stream, uint32_t error) {
  if (streams_.erase(stream)) reset_unknown(stream, error);
}

void Connection::reset_unknown(uint32_t stream, uint32_t error) {
  std::string payload;
  put32(payload, error);
  write_frame(kRstStream, 0, stream, payload);
}

void Connection::goaway(uint32_t error) {
  if (sent_goaway_) return;
  std::string payload;
  put32(payload, side_ == Side::kServer ? last_peer_stream_ : 0);
  put32(payload, error);
  write_frame(kGoaway, 0, 0, payload);
  sent_goaway_ = true;
}

}  // namespace astra::gateway::h2
