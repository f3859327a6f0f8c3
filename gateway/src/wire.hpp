// Reading the model a ModelInferRequest names, straight from its protobuf bytes.
#pragma once

#include <string_view>

namespace astra::gateway {

// What a request names: ModelInferRequest's fields 1 (model_name) and 2 (model_version).
struct ModelRef {
  std::string_view name;
  std::string_view version;
};

// Reads fields 1 and 2 of a serialized ModelInferRequest into `out`, as views into
// `message`: nothing is copied and no other field is decoded. Every top-level field is
// visited (a repeated occurrence wins, as in any protobuf parser), the others skipped
// by their length; a field 1 or 2 of another wire type is unknown, hence skipped.
// O(number of top-level fields); tensors cost one skip each.
//
// Returns false when the bytes are not a protobuf message: a truncated field, a varint
// longer than 10 bytes, field number 0, a wire type of 6 or 7, or an unbalanced group.
bool read_model(std::string_view message, ModelRef& out) noexcept;

}  // namespace astra::gateway
