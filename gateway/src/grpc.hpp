// gRPC over HTTP/2, the parts the fast lane needs: status codes, how gRPC maps a reset
// stream to a status, grpc-timeout both ways, grpc-message's percent-encoding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "h2.hpp"

namespace astra::gateway::grpc {

// The gRPC status codes the lane answers with itself.
enum Status : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kDeadlineExceeded = 4,
  kResourceExhausted = 8,
  kInternal = 13,
  kUnavailable = 14,
};

// The status of a stream its peer reset (with HTTP/2 error `error`), as gRPC maps it.
int reset_status(uint32_t error);

// The value of header `name`, or nullptr. O(headers).
const std::string* find(const h2::Headers& headers, std::string_view name);

// grpc-timeout ("<digits><unit>") in nanoseconds, or -1 (none or malformed).
int64_t parse_timeout(const std::string* text);

// Nanoseconds as grpc-timeout (at most 8 digits), rounded up.
std::string format_timeout(int64_t nanos);

// `text` as grpc-message carries it.
std::string percent_encode(std::string_view text);

}  // namespace astra::gateway::grpc
