// The retry and fault rules, as gateway/_rules.py's RetryRules hands them to the lane:
// the Python table is the only source, this is how the lane reads it. Each question is
// O(1) (a bit of a mask), but for the header lookups, O(headers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grpc.hpp"
#include "h2.hpp"

namespace astra::gateway {

class RetryRules {
 public:
  // Codes are gRPC status numbers (0-16).
  RetryRules(std::string refused_trailer, int refused_code, std::string idempotent_key,
             std::vector<std::string> idempotent_values, const std::vector<int>& idempotent_retry,
             const std::vector<int>& weight_errors, const std::vector<int>& replica_faults);

  // What an attempt's outcome says of its endpoint (gateway/_forward.py, Forwarder._observe).
  enum class Verdict { kNone, kSample, kRefused, kError, kFault };
  Verdict judge(int code, bool refused) const {
    if (refused) return Verdict::kRefused;
    if (has(weight_errors_, code)) return has(replica_faults_, code) ? Verdict::kFault : Verdict::kError;
    return code == grpc::kOk || code == grpc::kDeadlineExceeded ? Verdict::kSample : Verdict::kNone;
  }

  // A response with status `code` and these trailers is a refusal.
  bool refused(int code, const h2::Headers& trailers) const;
  // The request's headers mark it safe to run twice.
  bool idempotent(const h2::Headers& headers) const;
  // Whether a failed first attempt may go again on another endpoint.
  bool retry(int code, bool never_ran, bool idempotent) const {
    return never_ran || (idempotent && has(idempotent_retry_, code));
  }

 private:
  static uint32_t mask(const std::vector<int>& codes);
  static bool has(uint32_t mask, int code) { return code >= 0 && code < 32 && (mask >> code & 1u); }

  std::string refused_trailer_;
  int refused_code_;
  std::string idempotent_key_;
  std::vector<std::string> idempotent_values_;
  uint32_t idempotent_retry_, weight_errors_, replica_faults_;
};

}  // namespace astra::gateway
