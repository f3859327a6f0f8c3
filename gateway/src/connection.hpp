// The lane's HTTP/2 connections, clients' and upstream (to endpoints and to the inner
// server): reading and writing them on the event loop, a pool per upstream address,
// closing them. What arrives on a stream goes to the Proxy; so does a lost connection.
//
// Costs: a flush writes what every connection has queued (O(connections)); picking an
// upstream connection is O(connections of that address).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "call.hpp"
#include "h2.hpp"
#include "loop.hpp"

namespace astra::gateway {

class Proxy;
struct Target;

// An upstream address and its connections.
struct Backend {
  std::string address;
  SocketAddress socket;
  std::vector<Peer*> peers;
  int64_t in_flight = 0;  // forwarded attempts
  bool inner = false;
  bool orphan = false;    // no slot names it: closed once nothing is in flight
};

struct Peer final : h2::Handler {
  Proxy& proxy;
  int fd;
  Backend* backend;  // nullptr for a client
  h2::Connection h2;
  size_t sent = 0;   // of h2.output()
  bool connected;
  bool writing = false;  // EPOLLOUT is on
  bool dead = false;
  // Client: calls by stream (owned). Upstream: calls by upstream stream.
  std::unordered_map<uint32_t, std::unique_ptr<Call>> calls;
  std::unordered_map<uint32_t, Call*> legs;

  Peer(Proxy& proxy, int fd, Backend* backend);

  void on_headers(h2::Connection&, uint32_t stream, h2::Headers headers, bool end) override;
  void on_data(h2::Connection&, uint32_t stream, std::string_view data, bool end) override;
  void on_reset(h2::Connection&, uint32_t stream, uint32_t error) override;
  void on_goaway(h2::Connection&, uint32_t last_stream) override;
};

// Who is at the other end of `peer`, for error messages.
std::string describe(const Peer& peer);

// Every connection of the lane; the loop thread's alone.
class Connections {
 public:
  // `per_endpoint`: connections per endpoint address; `inner`: the inner server's address.
  Connections(EventLoop& loop, Proxy& proxy, int per_endpoint, std::string inner, const SocketAddress& socket);

  // Takes every client connection waiting on `listener`.
  void accept_all(int listener);
  // Reads what `events` say `peer` has.
  void io(Peer& peer, uint32_t events);
  // Writes what every connection has queued (EPOLLOUT only while a write is partial);
  // closes upstream connections left with nothing to do after a GOAWAY, and clients
  // after a protocol error.
  void flush();
  // GOAWAY to every client.
  void goaway_clients();
  // Closes every socket, with no more ado (the loop is ending).
  void close_all();
  // Closes a connection: a client's calls are cancelled upstream; an upstream's calls
  // fail (never sent if it never connected). The Peer itself goes at the next flush.
  void close(Peer& peer, const std::string& why);

  Backend& inner() { return inner_; }
  // The endpoint's upstream address (made on first use).
  Backend& backend_of(const Target& target);
  // A connection of `backend` to open a stream on: the least busy that takes one, or a
  // new one while there are fewer than the limit.
  Peer* peer_for(Backend& backend);
  // A forwarded attempt to `address` ended: an orphan address with nothing in flight closes.
  void attempt_ended(const std::string& address);
  // Closes the connections of addresses not `named` once nothing is in flight there.
  void sweep(const std::unordered_set<std::string>& named);

 private:
  Peer* add(std::unique_ptr<Peer> peer, uint32_t events);
  Peer* connect(Backend& backend);
  void write(Peer& peer);
  void retire_orphans();

  EventLoop& loop_;
  Proxy& proxy_;
  int per_endpoint_;
  std::unordered_map<int, std::unique_ptr<Peer>> peers_;
  std::unordered_map<std::string, std::unique_ptr<Backend>> backends_;
  Backend inner_;
  std::vector<std::unique_ptr<Peer>> graveyard_;
};

}  // namespace astra::gateway
