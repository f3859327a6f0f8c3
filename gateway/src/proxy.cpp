#include "proxy.hpp"

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "grpc.hpp"

namespace astra::gateway {
namespace {

constexpr std::string_view kModelInfer = "/inference.GRPCInferenceService/ModelInfer";

int64_t elapsed_ns(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count();
}

}  // namespace

// -- a client's side -------------------------------------------------------------------

void Proxy::client_headers(Peer& client, uint32_t stream, h2::Headers headers, bool end) {
  const auto found = client.calls.find(stream);
  if (found != client.calls.end()) {  // trailers from a client: the request ends
    client_data(client, stream, {}, true);
    return;
  }
  auto call = std::make_unique<Call>();
  call->client = &client;
  call->client_stream = stream;
  const std::string* path = grpc::find(headers, ":path");
  call->forward = forward_ && path && *path == kModelInfer;
  if (call->forward) {
    call->timeout_ns = grpc::parse_timeout(grpc::find(headers, "grpc-timeout"));
    call->idempotent = rules_.idempotent(headers);
  }
  call->headers = std::move(headers);
  Call& placed = *call;
  client.calls[stream] = std::move(call);
  ++calls_;
  if (!placed.forward) {
    relay(placed, {}, end);
  } else if (end) {
    dispatch(placed);
  }
}

void Proxy::client_data(Peer& client, uint32_t stream, std::string_view data, bool end) {
  const auto found = client.calls.find(stream);
  if (found == client.calls.end()) return;
  Call& call = *found->second;
  if (call.forward && !call.dispatched) {
    call.request.append(data);
    if (end) dispatch(call);
  } else if (call.up) {
    call.up->h2.send_data(call.up_stream, data, end);
  }
}

void Proxy::client_reset(Peer& client, uint32_t stream) {
  const auto found = client.calls.find(stream);
  if (found == client.calls.end()) return;
  cancel_upstream(*found->second);
  finish(*found->second);
}

void Proxy::client_gone(std::unordered_map<uint32_t, std::unique_ptr<Call>> calls) {
  for (auto& [stream, call] : calls) cancel_upstream(*call);
  calls_ -= static_cast<int64_t>(calls.size());
}

// The client reset its stream or went away: so does the upstream stream.
void Proxy::cancel_upstream(Call& call) {
  if (!call.up) return;
  call.up->h2.reset(call.up_stream, h2::kCancel);
  call.up->legs.erase(call.up_stream);
  if (call.forward && call.target) end_attempt(call);
  call.up = nullptr;
}

// The call is over on the client's side: forget it.
void Proxy::finish(Call& call) {
  if (call.up) {
    if (call.up->h2.has(call.up_stream)) call.up->h2.reset(call.up_stream, h2::kCancel);
    call.up->legs.erase(call.up_stream);
    call.up = nullptr;
  }
  --calls_;
  call.client->calls.erase(call.client_stream);  // destroys the call
}

// Answers the client with a status of the gateway's own (trailers only).
void Proxy::answer(Call& call, int code, const std::string& message) {
  const h2::Headers headers = {{":status", "200"},
                               {"content-type", "application/grpc"},
                               {"grpc-status", std::to_string(code)},
                               {"grpc-message", grpc::percent_encode(message)}};
  call.client->h2.send_headers(call.client_stream, headers, true);
  finish(call);
}

// -- relaying and forwarding -----------------------------------------------------------

// Sends the call to the inner server, with `body` so far; its streams go on as they come.
void Proxy::relay(Call& call, std::string_view body, bool end) {
  call.forward = false;
  Peer* peer = connections_.peer_for(connections_.inner());
  const uint32_t stream = peer ? peer->h2.open() : 0;
  if (!stream) {
    answer(call, grpc::kUnavailable, "the gateway cannot reach its inner server");
    return;
  }
  call.up = peer;
  call.up_stream = stream;
  peer->legs[stream] = &call;
  peer->h2.send_headers(stream, call.headers, end && body.empty());
  if (!body.empty()) peer->h2.send_data(stream, body, end);
}

// The whole request is in: route it, or hand it to the inner server.
void Proxy::dispatch(Call& call) {
  call.dispatched = true;
  const std::string_view body = call.request;
  // One uncompressed length-prefixed message; anything else is the inner server's.
  const bool plain = body.size() >= 5 && body[0] == 0 &&
                     (static_cast<size_t>(static_cast<uint8_t>(body[1])) << 24 |
                      static_cast<size_t>(static_cast<uint8_t>(body[2])) << 16 |
                      static_cast<size_t>(static_cast<uint8_t>(body[3])) << 8 |
                      static_cast<size_t>(static_cast<uint8_t>(body[4]))) == body.size() - 5;
  const int64_t slot = plain ? router_.route(body.substr(5), &call.picker) : kMalformed;
  std::shared_ptr<Target> target = slot >= 0 ? slots_.get(slot) : nullptr;
  if (!target || !target->resolved) {
    std::string request = std::move(call.request);
    relay(call, request, true);
    return;
  }
  attempt(call, std::move(target));
}

void Proxy::attempt(Call& call, std::shared_ptr<Target> target) {
  h2::Headers headers = call.headers;
  if (call.timeout_ns >= 0) {
    const int64_t left = call.timeout_ns - elapsed_ns(call.arrived);
    if (left <= 0) {
      answer(call, grpc::kDeadlineExceeded, "the deadline passed before the request was sent");
      return;
    }
    for (auto& [key, value] : headers) {
      if (key == "grpc-timeout") value = grpc::format_timeout(left);
    }
  }
  call.target = std::move(target);
  call.attempts += 1;
  call.attempt_start = Clock::now();
  call.got_headers = false;
  call.response_headers.clear();
  call.response.clear();
  call.trailers.clear();
  Backend& backend = connections_.backend_of(*call.target);
  ++backend.in_flight;
  call.target->in_flight.fetch_add(1, std::memory_order_relaxed);
  Peer* peer = connections_.peer_for(backend);
  const uint32_t stream = peer ? peer->h2.open() : 0;
  if (!stream) {
    upstream_failed(call, true, grpc::kUnavailable, "failed to connect to " + backend.address);
    return;
  }
  call.up = peer;
  call.up_stream = stream;
  peer->legs[stream] = &call;
  peer->h2.send_headers(stream, headers, false);
  peer->h2.send_data(stream, call.request, true);
}

// The attempt ends: the in-flight counts drop; an orphan endpoint may close.
void Proxy::end_attempt(Call& call) {
  call.target->in_flight.fetch_sub(1, std::memory_order_relaxed);
  connections_.attempt_ended(call.target->address);
}

// What an attempt's outcome says of its endpoint, by the rules.
void Proxy::observe(Call& call, int code, bool refused) {
  slots_.record(*call.target, rules_.judge(code, refused), code == grpc::kOk, elapsed_ns(call.attempt_start));
}

// -- retries ---------------------------------------------------------------------------

// Another endpoint of the call's route, by its picker, if it has one.
std::shared_ptr<Target> Proxy::other(const Call& call) {
  if (!call.picker) return nullptr;
  const size_t tries = std::min<size_t>(call.picker->size(), 8);
  for (size_t k = 0; k < tries; ++k) {
    const int64_t slot = call.picker->pick();
    if (slot >= 0 && slot != call.target->slot) {
      auto target = slots_.get(slot);
      if (target && target->resolved) return target;
    }
  }
  return nullptr;
}

// Retries on another endpoint once, when the rules allow; else false.
bool Proxy::retry(Call& call, int code, bool never_ran) {
  if (call.attempts > 1 || !rules_.retry(code, never_ran, call.idempotent)) return false;
  auto next = other(call);
  if (!next) return false;
  attempt(call, std::move(next));
  return true;
}

// -- the upstream side -----------------------------------------------------------------

// A forwarded attempt failed without a response (or a relay's inner stream did).
void Proxy::upstream_failed(Call& call, bool never_ran, int code, const std::string& message) {
  if (call.up) {
    call.up->legs.erase(call.up_stream);
    call.up = nullptr;
  }
  if (!call.forward) {
    if (call.client->h2.has(call.client_stream)) {
      if (!call.got_headers) {
        answer(call, code, message);
        return;
      }
      call.client->h2.reset(call.client_stream, h2::kInternalError);
    }
    finish(call);
    return;
  }
  end_attempt(call);
  observe(call, code, false);
  if (retry(call, code, never_ran)) return;
  answer(call, code, message);
}

void Proxy::upstream_lost(Call& call, bool never_connected, const std::string& why) {
  upstream_failed(call, never_connected, grpc::kUnavailable, why);
}

// A forwarded attempt's response is complete.
void Proxy::upstream_done(Call& call) {
  call.up->legs.erase(call.up_stream);
  call.up = nullptr;
  end_attempt(call);
  const bool trailers_only = call.trailers.empty();
  const h2::Headers& status_block = trailers_only ? call.response_headers : call.trailers;
  const std::string* status = grpc::find(status_block, "grpc-status");
  const int code = status ? std::atoi(status->c_str()) : grpc::kUnknown;
  const bool refused = rules_.refused(code, status_block);
  observe(call, code, refused);
  if (code != grpc::kOk && retry(call, code, refused)) return;
  h2::Connection& client = call.client->h2;
  const uint32_t stream = call.client_stream;
  if (trailers_only) {
    client.send_headers(stream, call.response_headers, true);
  } else {
    client.send_headers(stream, call.response_headers, false);
    if (!call.response.empty()) client.send_data(stream, call.response, false);
    client.send_headers(stream, call.trailers, true);
  }
  finish(call);
}

void Proxy::upstream_headers(Peer& up, uint32_t stream, h2::Headers headers, bool end) {
  const auto found = up.legs.find(stream);
  if (found == up.legs.end()) return;
  Call& call = *found->second;
  if (!call.forward) {
    call.got_headers = true;
    call.client->h2.send_headers(call.client_stream, headers, end);
    if (end) finish(call);
    return;
  }
  if (!call.got_headers) {
    call.got_headers = true;
    call.response_headers = std::move(headers);
  } else {
    call.trailers = std::move(headers);
  }
  if (end) upstream_done(call);
}

void Proxy::upstream_data(Peer& up, uint32_t stream, std::string_view data, bool end) {
  const auto found = up.legs.find(stream);
  if (found == up.legs.end()) return;
  Call& call = *found->second;
  if (!call.forward) {
    call.client->h2.send_data(call.client_stream, data, end);
    if (end) finish(call);
    return;
  }
  call.response.append(data);
  if (end) upstream_done(call);
}

void Proxy::upstream_reset(Peer& up, uint32_t stream, uint32_t error) {
  const auto found = up.legs.find(stream);
  if (found == up.legs.end()) return;
  Call& call = *found->second;
  if (!call.forward) {
    call.up->legs.erase(stream);
    call.up = nullptr;
    call.client->h2.reset(call.client_stream, error);
    finish(call);
    return;
  }
  upstream_failed(call, error == h2::kRefusedStream, grpc::reset_status(error),
                  "the replica at " + call.target->address + " reset the stream (HTTP/2 error " +
                      std::to_string(error) + ")");
}

void Proxy::upstream_goaway(Peer& up, uint32_t last) {
  std::vector<Call*> unprocessed;
  for (auto& [stream, call] : up.legs) {
    if (stream > last) unprocessed.push_back(call);
  }
  for (Call* call : unprocessed) {
    upstream_failed(*call, true, grpc::kUnavailable, describe(up) + " is shutting down");
  }
}

}  // namespace astra::gateway
