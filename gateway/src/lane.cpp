#include "lane.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "h2.hpp"

namespace astra::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using h2::Headers;

constexpr std::string_view kModelInfer = "/inference.GRPCInferenceService/ModelInfer";
constexpr std::string_view kRefusedTrailer = "x-astra-refused";
constexpr std::string_view kIdempotent = "x-astra-idempotent";

// gRPC status codes the forwarding rules name (gateway/_forward.py).
enum Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknownCode = 2,
  kDeadlineExceeded = 4,
  kResourceExhausted = 8,
  kAborted = 10,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
};

bool replica_fault(int code) {
  return code == kUnavailable || code == kInternal || code == kUnknownCode || code == kDataLoss;
}
bool lowers_weight(int code) { return replica_fault(code) || code == kResourceExhausted; }
bool idempotent_retry(int code) {
  return code == kUnavailable || code == kInternal || code == kUnknownCode ||
         code == kResourceExhausted || code == kAborted;
}

// The gRPC status of a stream its peer reset, as gRPC maps HTTP/2 errors.
int reset_code(uint32_t error) {
  switch (error) {
    case h2::kRefusedStream:
      return kUnavailable;
    case h2::kCancel:
      return kCancelled;
    case h2::kEnhanceYourCalm:
      return kResourceExhausted;
    default:
      return kInternal;
  }
}

const std::string* find(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

// grpc-timeout ("<digits><unit>") in nanoseconds, or -1.
int64_t parse_timeout(const std::string* text) {
  if (text == nullptr || text->size() < 2 || text->size() > 9) return -1;
  int64_t value = 0;
  for (size_t k = 0; k + 1 < text->size(); ++k) {
    const char c = (*text)[k];
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  switch (text->back()) {
    case 'H': return value * 3600'000'000'000;
    case 'M': return value * 60'000'000'000;
    case 'S': return value * 1'000'000'000;
    case 'm': return value * 1'000'000;
    case 'u': return value * 1'000;
    case 'n': return value;
    default: return -1;
  }
}

// Nanoseconds as grpc-timeout (at most 8 digits), rounded up.
std::string format_timeout(int64_t nanos) {
  constexpr int64_t kLimit = 100'000'000;
  const std::pair<int64_t, char> units[] = {{1, 'n'}, {1'000, 'u'}, {1'000'000, 'm'}, {1'000'000'000, 'S'}};
  for (const auto& [size, unit] : units) {
    const int64_t count = (nanos + size - 1) / size;
    if (count < kLimit) return std::to_string(count) + unit;
  }
  return std::to_string((nanos / 1'000'000'000 + 3599) / 3600) + 'H';
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    if (byte >= 0x20 && byte <= 0x7e && byte != '%') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 15]);
    }
  }
  return out;
}

// `host:port` (host may be [v6]) resolved to its first address.
bool resolve(const std::string& address, sockaddr_storage& out, socklen_t& length) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found) != 0) return false;
  std::memcpy(&out, found->ai_addr, found->ai_addrlen);
  length = found->ai_addrlen;
  freeaddrinfo(found);
  return true;
}

int64_t elapsed_ns(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count();
}

void set_nodelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

// One slot's endpoint as Python set it, with its counters. Counters are atomics that
// take_stats() swaps out; `faulted` is the loop thread's.
struct Target {
  int64_t slot;
  std::string address;
  sockaddr_storage socket_address{};
  socklen_t socket_length = 0;
  bool resolved = false;
  std::atomic<int64_t> in_flight{0}, samples{0}, sample_ns{0}, failed{0}, failed_ns{0};
  bool faulted = false;  // failed since its last success
};

struct Peer;

// One client stream and, once it has one, the upstream stream it goes on.
struct Call {
  Peer* client;
  uint32_t client_stream;
  Headers headers;
  bool forward;               // a ModelInfer on the fast path; else relayed to the inner server
  bool dispatched = false;    // forward: routed and sent on
  std::string request;        // forward: the whole request, kept for a retry
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
  Headers response_headers;
  std::string response;
  Headers trailers;
};

struct Backend {
  std::string address;
  sockaddr_storage socket_address{};
  socklen_t socket_length = 0;
  std::vector<Peer*> peers;
  int64_t in_flight = 0;  // forwarded attempts
  bool inner = false;
  bool orphan = false;    // no slot names it: closed once nothing is in flight
};

struct Peer final : h2::Handler {
  Lane::Impl& lane;
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

  Peer(Lane::Impl& lane, int fd, Backend* backend)
      : lane(lane),
        fd(fd),
        backend(backend),
        h2(backend ? h2::Connection::Side::kClient : h2::Connection::Side::kServer, *this),
        connected(backend == nullptr) {}

  void on_headers(h2::Connection&, uint32_t stream, Headers headers, bool end) override;
  void on_data(h2::Connection&, uint32_t stream, std::string_view data, bool end) override;
  void on_reset(h2::Connection&, uint32_t stream, uint32_t error) override;
  void on_goaway(h2::Connection&, uint32_t last_stream) override;
};

struct Lane::Impl {
  const Router& router;
  Options options;
  int epoll = -1, listener = -1, wake = -1, events_fd = -1;
  int port = 0;
  std::thread thread;
  std::atomic<bool> stopping{false}, closing{false};
  std::atomic<int64_t> calls{0};

  // Shared with Python's thread.
  std::mutex mutex;
  std::vector<std::shared_ptr<Target>> slots;
  std::vector<SlotEvent> events;
  bool sweep = false;

  // The loop thread's.
  std::unordered_map<int, std::unique_ptr<Peer>> peers;
  std::unordered_map<std::string, std::unique_ptr<Backend>> backends;
  Backend inner;
  std::vector<std::unique_ptr<Peer>> graveyard;
  int tag_listener = 0, tag_wake = 0;

  Impl(const Router& router, Options options) : router(router), options(std::move(options)) {}

  // -- the loop ------------------------------------------------------------------------

  void run() {
    epoll_event ready[256];
    while (!closing.load()) {
      const int count = epoll_wait(epoll, ready, 256, -1);
      for (int k = 0; k < count; ++k) {
        void* tag = ready[k].data.ptr;
        if (tag == &tag_listener) {
          accept_all();
        } else if (tag == &tag_wake) {
          woken();
        } else {
          io(*static_cast<Peer*>(tag), ready[k].events);
        }
      }
      maintain();
    }
    for (auto& [fd, peer] : peers) ::close(fd);
    peers.clear();
  }

  void woken() {
    uint64_t value;
    [[maybe_unused]] auto got = ::read(wake, &value, sizeof value);
    if (stopping.load() && listener >= 0) {
      epoll_ctl(epoll, EPOLL_CTL_DEL, listener, nullptr);
      ::close(listener);
      listener = -1;
      for (auto& [fd, peer] : peers) {
        if (!peer->backend) peer->h2.goaway(h2::kNoError);
      }
    }
    bool swept;
    {
      std::lock_guard lock(mutex);
      swept = sweep;
      sweep = false;
    }
    if (swept) sweep_backends();
  }

  void accept_all() {
    for (;;) {
      const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      set_nodelay(fd);
      add(std::make_unique<Peer>(*this, fd, nullptr), EPOLLIN);
    }
  }

  Peer* add(std::unique_ptr<Peer> peer, uint32_t events) {
    epoll_event event{};
    event.events = events;
    event.data.ptr = peer.get();
    epoll_ctl(epoll, EPOLL_CTL_ADD, peer->fd, &event);
    peer->writing = events & EPOLLOUT;
    Peer* raw = peer.get();
    peers[peer->fd] = std::move(peer);
    return raw;
  }

  void io(Peer& peer, uint32_t events) {
    if (peer.dead) return;
    if (!peer.connected) {
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(peer.fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        close_peer(peer, "failed to connect to " + peer.backend->address + ": " + std::strerror(error ? error : ECONNREFUSED));
        return;
      }
      peer.connected = true;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      char buffer[65536];
      for (int reads = 0; reads < 16; ++reads) {
        const ssize_t got = ::read(peer.fd, buffer, sizeof buffer);
        if (got > 0) {
          if (!peer.h2.receive({buffer, static_cast<size_t>(got)})) {
            write(peer);
            close_peer(peer, "the connection to " + name(peer) + " failed (HTTP/2 protocol error)");
            return;
          }
          if (peer.dead) return;
          if (static_cast<size_t>(got) < sizeof buffer) break;
          continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
        close_peer(peer, name(peer) + " closed the connection");
        return;
      }
    }
  }

  std::string name(const Peer& peer) const {
    return peer.backend ? (peer.backend->inner ? std::string("the gateway's inner server") : peer.backend->address)
                        : std::string("the client");
  }

  // Writes what every connection has queued; EPOLLOUT only while a write is partial.
  // Closes upstream connections left with nothing to do after a GOAWAY, and clients
  // after a protocol error.
  void maintain() {
    std::vector<Peer*> live;
    live.reserve(peers.size());
    for (auto& [fd, peer] : peers) live.push_back(peer.get());
    for (Peer* peer : live) {
      if (!peer->dead) write(*peer);
    }
    std::vector<Peer*> idle;
    for (Peer* peer : live) {
      if (peer->dead) continue;
      const bool done = peer->backend ? peer->legs.empty() && (peer->h2.going_away() || peer->h2.failed())
                                      : peer->h2.failed() && peer->h2.output().size() == peer->sent;
      if (done) idle.push_back(peer);
    }
    for (Peer* peer : idle) close_peer(*peer, "");
    graveyard.clear();
  }

  void write(Peer& peer) {
    if (!peer.connected) return;
    std::string& out = peer.h2.output();
    while (peer.sent < out.size()) {
      const ssize_t wrote = ::send(peer.fd, out.data() + peer.sent, out.size() - peer.sent, MSG_NOSIGNAL);
      if (wrote > 0) {
        peer.sent += static_cast<size_t>(wrote);
        continue;
      }
      if (wrote < 0 && (errno == EAGAIN || errno == EINTR)) break;
      close_peer(peer, name(peer) + " closed the connection");
      return;
    }
    if (peer.sent == out.size()) {
      out.clear();
      peer.sent = 0;
    }
    const bool want = peer.sent < out.size();
    if (want != peer.writing) {
      epoll_event event{};
      event.events = want ? EPOLLIN | EPOLLOUT : EPOLLIN;
      event.data.ptr = &peer;
      epoll_ctl(epoll, EPOLL_CTL_MOD, peer.fd, &event);
      peer.writing = want;
    }
  }

  // Closes a connection: a client's calls are cancelled upstream; an upstream's calls
  // fail (never sent if it never connected). The Peer itself goes at the iteration's end.
  void close_peer(Peer& peer, const std::string& why) {
    if (peer.dead) return;
    peer.dead = true;
    epoll_ctl(epoll, EPOLL_CTL_DEL, peer.fd, nullptr);
    auto node = peers.extract(peer.fd);  // before the fd can be reused
    graveyard.push_back(std::move(node.mapped()));
    ::close(peer.fd);
    if (peer.backend) {
      auto& list = peer.backend->peers;
      list.erase(std::remove(list.begin(), list.end(), &peer), list.end());
      auto legs = std::move(peer.legs);
      for (auto& [stream, call] : legs) {
        call->up = nullptr;
        upstream_failed(*call, !peer.connected, kUnavailable, why.empty() ? name(peer) + " went away" : why);
      }
    } else {
      auto calls_left = std::move(peer.calls);
      for (auto& [stream, call] : calls_left) cancel_upstream(*call);
      this->calls -= static_cast<int64_t>(calls_left.size());
    }
  }

  // -- upstream connections ------------------------------------------------------------

  Peer* connect(Backend& backend) {
    const int fd = socket(backend.socket_address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    set_nodelay(fd);
    const int done = ::connect(fd, reinterpret_cast<const sockaddr*>(&backend.socket_address), backend.socket_length);
    if (done < 0 && errno != EINPROGRESS) {
      ::close(fd);
      return nullptr;
    }
    Peer* peer = add(std::make_unique<Peer>(*this, fd, &backend), EPOLLIN | EPOLLOUT);
    backend.peers.push_back(peer);
    return peer;
  }

  // A connection of `backend` to open a stream on: the least busy that takes one, or a
  // new one while there are fewer than `connections`.
  Peer* peer_for(Backend& backend) {
    Peer* best = nullptr;
    for (Peer* peer : backend.peers) {
      if (peer->h2.going_away() || peer->h2.failed()) continue;
      if (peer->h2.streams() >= peer->h2.peer_max_streams()) continue;
      if (!best || peer->h2.streams() < best->h2.streams()) best = peer;
    }
    const size_t limit = backend.inner ? 4 : static_cast<size_t>(std::max(1, options.connections));
    if (best && (best->h2.streams() == 0 || backend.peers.size() >= limit)) return best;
    Peer* fresh = connect(backend);
    return fresh ? fresh : best;
  }

  Backend& backend_of(const Target& target) {
    auto& slot = backends[target.address];
    if (!slot) {
      slot = std::make_unique<Backend>();
      slot->address = target.address;
      slot->socket_address = target.socket_address;
      slot->socket_length = target.socket_length;
    }
    slot->orphan = false;
    return *slot;
  }

  // Closes the connections of endpoints no slot names once nothing is in flight there.
  void sweep_backends() {
    std::unordered_set<std::string> named;
    {
      std::lock_guard lock(mutex);
      for (const auto& target : slots) {
        if (target) named.insert(target->address);
      }
    }
    for (auto& [address, backend] : backends) backend->orphan = !named.count(address);
    retire_orphans();
  }

  void retire_orphans() {
    for (auto it = backends.begin(); it != backends.end();) {
      Backend& backend = *it->second;
      if (!backend.orphan || backend.in_flight) {
        ++it;
        continue;
      }
      auto peers_left = backend.peers;
      for (Peer* peer : peers_left) close_peer(*peer, "");
      it = backends.erase(it);
    }
  }

  // -- calls ---------------------------------------------------------------------------

  void client_headers(Peer& client, uint32_t stream, Headers headers, bool end) {
    const auto found = client.calls.find(stream);
    if (found != client.calls.end()) {  // trailers from a client: the request ends
      client_data(client, stream, {}, true);
      return;
    }
    auto call = std::make_unique<Call>();
    call->client = &client;
    call->client_stream = stream;
    const std::string* path = find(headers, ":path");
    call->forward = options.forward && path && *path == kModelInfer;
    if (call->forward) {
      call->timeout_ns = parse_timeout(find(headers, "grpc-timeout"));
      const std::string* idempotent = find(headers, kIdempotent);
      call->idempotent = idempotent && (*idempotent == "true" || *idempotent == "1");
    }
    call->headers = std::move(headers);
    Call& placed = *call;
    client.calls[stream] = std::move(call);
    ++calls;
    if (!placed.forward) {
      relay(placed, {}, end);
    } else if (end) {
      dispatch(placed);
    }
  }

  void client_data(Peer& client, uint32_t stream, std::string_view data, bool end) {
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

  // The client reset its stream or went away: so does the upstream stream.
  void cancel_upstream(Call& call) {
    if (!call.up) return;
    call.up->h2.reset(call.up_stream, h2::kCancel);
    call.up->legs.erase(call.up_stream);
    if (call.forward && call.target) end_attempt(call);
    call.up = nullptr;
  }

  void client_reset(Peer& client, uint32_t stream) {
    const auto found = client.calls.find(stream);
    if (found == client.calls.end()) return;
    cancel_upstream(*found->second);
    finish(*found->second);
  }

  // The call is over on the client's side: forget it.
  void finish(Call& call) {
    if (call.up) {
      if (call.up->h2.has(call.up_stream)) call.up->h2.reset(call.up_stream, h2::kCancel);
      call.up->legs.erase(call.up_stream);
      call.up = nullptr;
    }
    --calls;
    call.client->calls.erase(call.client_stream);  // destroys the call
  }

  // Answers the client with a status of the gateway's own (trailers only).
  void answer(Call& call, int code, const std::string& message) {
    const Headers headers = {{":status", "200"},
                             {"content-type", "application/grpc"},
                             {"grpc-status", std::to_string(code)},
                             {"grpc-message", percent_encode(message)}};
    call.client->h2.send_headers(call.client_stream, headers, true);
    finish(call);
  }

  // Sends the call to the inner server, with `body` so far; its streams go on as they come.
  void relay(Call& call, std::string_view body, bool end) {
    call.forward = false;
    Peer* peer = peer_for(inner);
    const uint32_t stream = peer ? peer->h2.open() : 0;
    if (!stream) {
      answer(call, kUnavailable, "the gateway cannot reach its inner server");
      return;
    }
    call.up = peer;
    call.up_stream = stream;
    peer->legs[stream] = &call;
    peer->h2.send_headers(stream, call.headers, end && body.empty());
    if (!body.empty()) peer->h2.send_data(stream, body, end);
  }

  // The whole request is in: route it, or hand it to the inner server.
  void dispatch(Call& call) {
    call.dispatched = true;
    const std::string_view body = call.request;
    // One uncompressed length-prefixed message; anything else is the inner server's.
    const bool plain = body.size() >= 5 && body[0] == 0 &&
                       (static_cast<size_t>(static_cast<uint8_t>(body[1])) << 24 |
                        static_cast<size_t>(static_cast<uint8_t>(body[2])) << 16 |
                        static_cast<size_t>(static_cast<uint8_t>(body[3])) << 8 |
                        static_cast<size_t>(static_cast<uint8_t>(body[4]))) == body.size() - 5;
    const int64_t slot = plain ? router.route(body.substr(5), &call.picker) : kMalformed;
    std::shared_ptr<Target> target = slot >= 0 ? target_of(slot) : nullptr;
    if (!target || !target->resolved) {
      std::string request = std::move(call.request);
      relay(call, request, true);
      return;
    }
    attempt(call, std::move(target));
  }

  std::shared_ptr<Target> target_of(int64_t slot) {
    std::lock_guard lock(mutex);
    return slot < static_cast<int64_t>(slots.size()) ? slots[static_cast<size_t>(slot)] : nullptr;
  }

  void attempt(Call& call, std::shared_ptr<Target> target) {
    Headers headers = call.headers;
    if (call.timeout_ns >= 0) {
      const int64_t left = call.timeout_ns - elapsed_ns(call.arrived);
      if (left <= 0) {
        answer(call, kDeadlineExceeded, "the deadline passed before the request was sent");
        return;
      }
      for (auto& [key, value] : headers) {
        if (key == "grpc-timeout") value = format_timeout(left);
      }
    }
    call.target = std::move(target);
    call.attempts += 1;
    call.attempt_start = Clock::now();
    call.got_headers = false;
    call.response_headers.clear();
    call.response.clear();
    call.trailers.clear();
    Backend& backend = backend_of(*call.target);
    ++backend.in_flight;
    call.target->in_flight.fetch_add(1, std::memory_order_relaxed);
    Peer* peer = peer_for(backend);
    const uint32_t stream = peer ? peer->h2.open() : 0;
    if (!stream) {
      upstream_failed(call, true, kUnavailable, "failed to connect to " + backend.address);
      return;
    }
    call.up = peer;
    call.up_stream = stream;
    peer->legs[stream] = &call;
    peer->h2.send_headers(stream, headers, false);
    peer->h2.send_data(stream, call.request, true);
  }

  // The attempt ends: the in-flight counts drop; an orphan endpoint may close.
  void end_attempt(Call& call) {
    call.target->in_flight.fetch_sub(1, std::memory_order_relaxed);
    const auto found = backends.find(call.target->address);
    if (found != backends.end() && --found->second->in_flight == 0 && found->second->orphan) retire_orphans();
  }

  // What an attempt's outcome says of its endpoint (gateway/_forward.py _observe).
  void observe(Call& call, int code, bool refused) {
    Target& target = *call.target;
    const int64_t took = elapsed_ns(call.attempt_start);
    if (code == kOk || code == kDeadlineExceeded) {
      target.samples.fetch_add(1, std::memory_order_relaxed);
      target.sample_ns.fetch_add(took, std::memory_order_relaxed);
      if (code == kOk && target.faulted) {
        target.faulted = false;
        event(target, Health::kRecovered);
      }
    } else if (refused) {
      event(target, Health::kRefused);
    } else if (lowers_weight(code)) {
      target.failed.fetch_add(1, std::memory_order_relaxed);
      target.failed_ns.fetch_add(took, std::memory_order_relaxed);
      if (replica_fault(code)) {
        target.faulted = true;
        event(target, Health::kFault);
      }
    }
  }

  void event(const Target& target, Health kind) {
    bool first;
    {
      std::lock_guard lock(mutex);
      first = events.empty();
      events.push_back({target.slot, target.address, kind});
    }
    if (first) {
      const uint64_t one = 1;
      [[maybe_unused]] auto wrote = ::write(events_fd, &one, sizeof one);
    }
  }

  // Another endpoint of the call's route, by its picker, if it has one.
  std::shared_ptr<Target> other(const Call& call) {
    if (!call.picker) return nullptr;
    const size_t tries = std::min<size_t>(call.picker->size(), 8);
    for (size_t k = 0; k < tries; ++k) {
      const int64_t slot = call.picker->pick();
      if (slot >= 0 && slot != call.target->slot) {
        auto target = target_of(slot);
        if (target && target->resolved) return target;
      }
    }
    return nullptr;
  }

  // Retries on another endpoint when the rules allow; else false.
  bool retry(Call& call, int code, bool never_ran) {
    if (call.attempts > 1) return false;
    if (!never_ran && !(call.idempotent && idempotent_retry(code))) return false;
    auto next = other(call);
    if (!next) return false;
    attempt(call, std::move(next));
    return true;
  }

  // A forwarded attempt failed without a response (or a relay's inner stream did).
  void upstream_failed(Call& call, bool never_ran, int code, const std::string& message) {
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

  // A forwarded attempt's response is complete.
  void upstream_done(Call& call) {
    call.up->legs.erase(call.up_stream);
    call.up = nullptr;
    end_attempt(call);
    const bool trailers_only = call.trailers.empty();
    const Headers& status_block = trailers_only ? call.response_headers : call.trailers;
    const std::string* status = find(status_block, "grpc-status");
    const int code = status ? std::atoi(status->c_str()) : kUnknownCode;
    const bool refused = code == kUnavailable && find(status_block, kRefusedTrailer);
    observe(call, code, refused);
    if (code != kOk && retry(call, code, refused)) return;
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

  void upstream_headers(Peer& up, uint32_t stream, Headers headers, bool end) {
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

  void upstream_data(Peer& up, uint32_t stream, std::string_view data, bool end) {
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

  void upstream_reset(Peer& up, uint32_t stream, uint32_t error) {
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
    upstream_failed(call, error == h2::kRefusedStream, reset_code(error),
                    "the replica at " + call.target->address + " reset the stream (HTTP/2 error " +
                        std::to_string(error) + ")");
  }

  void upstream_goaway(Peer& up, uint32_t last) {
    std::vector<Call*> unprocessed;
    for (auto& [stream, call] : up.legs) {
      if (stream > last) unprocessed.push_back(call);
    }
    for (Call* call : unprocessed) {
      upstream_failed(*call, true, kUnavailable, name(up) + " is shutting down");
    }
  }
};

void Peer::on_headers(h2::Connection&, uint32_t stream, Headers headers, bool end) {
  if (backend) {
    lane.upstream_headers(*this, stream, std::move(headers), end);
  } else {
    lane.client_headers(*this, stream, std::move(headers), end);
  }
}

void Peer::on_data(h2::Connection&, uint32_t stream, std::string_view data, bool end) {
  if (backend) {
    lane.upstream_data(*this, stream, data, end);
  } else {
    lane.client_data(*this, stream, data, end);
  }
}

void Peer::on_reset(h2::Connection&, uint32_t stream, uint32_t error) {
  if (backend) {
    lane.upstream_reset(*this, stream, error);
  } else {
    lane.client_reset(*this, stream);
  }
}

void Peer::on_goaway(h2::Connection&, uint32_t last_stream) {
  if (backend) lane.upstream_goaway(*this, last_stream);
}

// -- the Python-facing side --------------------------------------------------------------

Lane::Lane(const Router& router, Options options) : impl_(std::make_unique<Impl>(router, std::move(options))) {
  Impl& lane = *impl_;
  sockaddr_storage address{};
  socklen_t length = 0;
  const std::string listen = lane.options.host + ":" + std::to_string(lane.options.port);
  if (!resolve(listen, address, length)) throw std::runtime_error("cannot resolve " + listen);
  lane.inner.inner = true;
  lane.inner.address = lane.options.inner_host + ":" + std::to_string(lane.options.inner_port);
  if (!resolve(lane.inner.address, lane.inner.socket_address, lane.inner.socket_length)) {
    throw std::runtime_error("cannot resolve " + lane.inner.address);
  }
  lane.listener = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(lane.listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lane.listener < 0 || bind(lane.listener, reinterpret_cast<sockaddr*>(&address), length) < 0 ||
      ::listen(lane.listener, 1024) < 0) {
    const std::string why = std::strerror(errno);
    if (lane.listener >= 0) ::close(lane.listener);
    throw std::runtime_error("cannot listen on " + listen + ": " + why);
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof bound;
  getsockname(lane.listener, reinterpret_cast<sockaddr*>(&bound), &bound_length);
  lane.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  lane.epoll = epoll_create1(EPOLL_CLOEXEC);
  lane.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  lane.events_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = &lane.tag_listener;
  epoll_ctl(lane.epoll, EPOLL_CTL_ADD, lane.listener, &event);
  event.data.ptr = &lane.tag_wake;
  epoll_ctl(lane.epoll, EPOLL_CTL_ADD, lane.wake, &event);
  lane.thread = std::thread([&lane] { lane.run(); });
}

Lane::~Lane() {
  close();
  ::close(impl_->events_fd);
}

int Lane::port() const { return impl_->port; }

namespace {
void poke(int fd) {
  const uint64_t one = 1;
  [[maybe_unused]] auto wrote = ::write(fd, &one, sizeof one);
}
}  // namespace

void Lane::set_slot(int64_t slot, const std::string& address) {
  if (slot < 0) throw std::invalid_argument("a slot is >= 0");
  std::shared_ptr<Target> target;
  if (!address.empty()) {
    target = std::make_shared<Target>();
    target->slot = slot;
    target->address = address;
    target->resolved = resolve(address, target->socket_address, target->socket_length);
  }
  Impl& lane = *impl_;
  {
    std::lock_guard lock(lane.mutex);
    if (lane.slots.size() <= static_cast<size_t>(slot)) lane.slots.resize(static_cast<size_t>(slot) + 1);
    lane.slots[static_cast<size_t>(slot)] = std::move(target);
    lane.sweep = lane.sweep || address.empty();
  }
  if (address.empty() && lane.thread.joinable()) poke(lane.wake);
}

std::vector<SlotStats> Lane::take_stats() {
  std::vector<SlotStats> out;
  std::lock_guard lock(impl_->mutex);
  for (const auto& target : impl_->slots) {
    if (!target) continue;
    out.push_back({target->slot, target->in_flight.load(), target->samples.exchange(0),
                   static_cast<double>(target->sample_ns.exchange(0)) * 1e-9, target->failed.exchange(0),
                   static_cast<double>(target->failed_ns.exchange(0)) * 1e-9});
  }
  return out;
}

std::vector<SlotEvent> Lane::take_events() {
  uint64_t value;
  [[maybe_unused]] auto got = ::read(impl_->events_fd, &value, sizeof value);
  std::lock_guard lock(impl_->mutex);
  return std::exchange(impl_->events, {});
}

int Lane::event_fd() const { return impl_->events_fd; }

void Lane::stop_accepting() {
  impl_->stopping = true;
  if (impl_->thread.joinable()) poke(impl_->wake);
}

int64_t Lane::active() const { return impl_->calls.load(); }

void Lane::close() {
  Impl& lane = *impl_;
  if (!lane.thread.joinable()) return;
  lane.closing = true;
  poke(lane.wake);
  lane.thread.join();
  if (lane.listener >= 0) ::close(lane.listener);
  ::close(lane.wake);
  ::close(lane.epoll);
}

}  // namespace astra::gateway
