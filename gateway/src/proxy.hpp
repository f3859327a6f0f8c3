// The lane's calls: what each client stream becomes. A routable ModelInfer is forwarded
// to the endpoint its picker gives, retried once on another by the RetryRules, its
// deadline passed on, its outcome recorded in the SlotTable; anything else is relayed
// stream by stream to the inner server.
//
// Costs: a forwarded call is one route (a hash lookup and a pick), one copy of its
// request and of its response, and the frames.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "call.hpp"
#include "connection.hpp"
#include "router.hpp"
#include "rules.hpp"
#include "slots.hpp"

namespace astra::gateway {

class Proxy {
 public:
  // `forward`: false sends every ModelInfer to the inner server too.
  Proxy(const Router& router, RetryRules rules, SlotTable& slots, Connections& connections, bool forward)
      : router_(router), rules_(std::move(rules)), slots_(slots), connections_(connections), forward_(forward) {}

  // Calls in progress (any thread).
  int64_t active() const { return calls_.load(); }

  // A client's streams.
  void client_headers(Peer& client, uint32_t stream, h2::Headers headers, bool end);
  void client_data(Peer& client, uint32_t stream, std::string_view data, bool end);
  void client_reset(Peer& client, uint32_t stream);
  // A client's connection closed with these calls on it.
  void client_gone(std::unordered_map<uint32_t, std::unique_ptr<Call>> calls);

  // An upstream connection's streams.
  void upstream_headers(Peer& up, uint32_t stream, h2::Headers headers, bool end);
  void upstream_data(Peer& up, uint32_t stream, std::string_view data, bool end);
  void upstream_reset(Peer& up, uint32_t stream, uint32_t error);
  void upstream_goaway(Peer& up, uint32_t last);
  // The call's upstream connection closed (before connecting: `never_connected`).
  void upstream_lost(Call& call, bool never_connected, const std::string& why);

 private:
  void dispatch(Call& call);
  void relay(Call& call, std::string_view body, bool end);
  void attempt(Call& call, std::shared_ptr<Target> target);
  void end_attempt(Call& call);
  void observe(Call& call, int code, bool refused);
  std::shared_ptr<Target> other(const Call& call);
  bool retry(Call& call, int code, bool never_ran);
  void upstream_failed(Call& call, bool never_ran, int code, const std::string& message);
  void upstream_done(Call& call);
  void cancel_upstream(Call& call);
  void answer(Call& call, int code, const std::string& message);
  void finish(Call& call);

  const Router& router_;
  const RetryRules rules_;
  SlotTable& slots_;
  Connections& connections_;
  const bool forward_;
  std::atomic<int64_t> calls_{0};
};

}  // namespace astra::gateway
