#include "rules.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>


namespace astra::gateway {

RetryRules::RetryRules(std::string refused_trailer, int refused_code, std::string idempotent_key,
                       std::vector<std::string> idempotent_values, const std::vector<int>& idempotent_retry,
                       const std::vector<int>& weight_errors, const std::vector<int>& replica_faults)
    : refused_trailer_(std::move(refused_trailer)),
      refused_code_(refused_code),
      idempotent_key_(std::move(idempotent_key)),
      idempotent_values_(std::move(idempotent_values)),
      idempotent_retry_(mask(idempotent_retry)),
      weight_errors_(mask(weight_errors)),
      replica_faults_(mask(replica_faults)) {}

uint32_t RetryRules::mask(const std::vector<int>& codes) {
  uint32_t out = 0;
  for (const int code : codes) {
    if (code < 0 || code >= 32) throw std::invalid_argument("not a gRPC status: " + std::to_string(code));
    out |= 1u << code;
  }
  return out;
}

bool RetryRules::refused(int code, const h2::Headers& trailers) const {
  return code == refused_code_ && grpc::find(trailers, refused_trailer_) != nullptr;
}

bool RetryRules::idempotent(const h2::Headers& headers) const {
  const std::string* value = grpc::find(headers, idempotent_key_);
  return value && std::find(idempotent_values_.begin(), idempotent_values_.end(), *value) != idempotent_values_.end();
}

}  // namespace astra::gateway
