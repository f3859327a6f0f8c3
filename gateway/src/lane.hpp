// The fast lane: the gateway's public HTTP/2 front in C++, on a thread of its own.
//
// A ModelInfer whose request the Router routes is forwarded straight to the endpoint it
// picked, over HTTP/2 connections this lane keeps to each endpoint address; everything
// else (other methods, unroutable requests, compressed or malformed messages) is relayed
// stream by stream to the gateway's inner grpc.aio server, which answers as it would on
// its own. Forwarding keeps the semantics of gateway/_forward.py, by the same table of
// rules (RetryRules, handed over from gateway/_rules.py): one retry on another endpoint
// when the first attempt never ran (no connection, REFUSED_STREAM, beyond a GOAWAY, or a
// refusal) or the request is idempotent; the client's deadline goes on (grpc-timeout,
// less the time spent); per-slot counters and health events feed the Python side
// (take_stats, take_events).
//
// The parts, each in its own file: the event loop and sockets (loop.hpp), the slots
// shared with Python and their statistics (slots.hpp), the connections (connection.hpp),
// the calls, forwarding and retries (proxy.hpp), the rules (rules.hpp), gRPC's details
// (grpc.hpp). This class owns them and the thread.
//
// Costs: a forwarded call is one route (a hash lookup and a pick), one copy of its
// request and of its response, and the frames; each loop wakeup then writes what every
// connection has queued (O(connections)). A slot update is O(1); freeing one makes the
// loop sweep the endpoints (O(slots + endpoint addresses)).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "router.hpp"
#include "rules.hpp"

namespace astra::gateway {

// What the lane saw of one slot since the last take_stats().
struct SlotStats {
  int64_t slot;
  int64_t in_flight;  // now
  int64_t samples;    // answered, or out of time
  double sample_seconds;
  int64_t failed;     // failures that lower the weight (RetryRules' weight errors)
  double failed_seconds;
};

// A health event of a slot's endpoint.
enum class Health : int { kRefused = 0, kFault = 1, kRecovered = 2 };

struct SlotEvent {
  int64_t slot;
  std::string address;
  Health kind;
};

class Lane {
 public:
  struct Options {
    std::string host;        // where to listen
    int port = 0;            // 0: any free port
    std::string inner_host;  // the inner grpc.aio server
    int inner_port = 0;
    bool forward = true;     // false: every ModelInfer goes to the inner server too
    int connections = 1;     // HTTP/2 connections per endpoint address
  };

  // Listens and starts the loop thread, forwarding by `rules`. Throws
  // std::runtime_error when it cannot listen.
  Lane(const Router& router, RetryRules rules, Options options);
  ~Lane();
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  int port() const;
  // Slot `slot` now holds the endpoint at `address` ("host:port"); "" frees it. Call it
  // before the slot enters a picker.
  void set_slot(int64_t slot, const std::string& address);
  // Every slot's counters since the last call (in-flight as of now). O(slots).
  std::vector<SlotStats> take_stats();
  // Health events since the last call; an eventfd (event_fd()) turns readable when
  // there are new ones.
  std::vector<SlotEvent> take_events();
  int event_fd() const;
  // Stops taking connections and streams (GOAWAY to every client).
  void stop_accepting();
  // Calls in progress.
  int64_t active() const;
  // Stops the thread and closes every connection. Idempotent.
  void close();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace astra::gateway
