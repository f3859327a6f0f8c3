// One client stream of the lane and, once it has one, the upstream stream it goes on.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "h2.hpp"
#include "picker.hpp"

namespace astra::gateway {

using Clock = std::chrono::steady_clock;

struct Peer;
struct Target;

struct Call {
  Peer* client;
  uint32_t client_stream;
  h2::Headers headers;
  bool forward;             // a ModelInfer on the fast path; else relayed to the inner server
  bool dispatched = false;  // forward: routed and sent on
  std::string request;      // forward: the whole request, kept for a retry
  Peer* up = nullptr;
  uint32_t up_stream = 0;
  // forward
  std::shared_ptr<Target> target;
  std::shared_ptr<Picker> picker;
  int attempts = 0;
  Clock::time_point arrived = Clock::now();
  Clock::time_point attempt_start;
  int64_t timeout_ns = -1;
  bool idempotent = false;
  bool got_headers = false;
  h2::Headers response_headers;
  std::string response;
  h2::Headers trailers;
};

}  // namespace astra::gateway
