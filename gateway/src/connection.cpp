#include "connection.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "proxy.hpp"
#include "slots.hpp"

namespace astra::gateway {

Peer::Peer(Proxy& proxy, int fd, Backend* backend)
    : proxy(proxy),
      fd(fd),
      backend(backend),
      h2(backend ? h2::Connection::Side::kClient : h2::Connection::Side::kServer, *this),
      connected(backend == nullptr) {}

void Peer::on_headers(h2::Connection&, uint32_t stream, h2::Headers headers, bool end) {
  if (backend) {
    proxy.upstream_headers(*this, stream, std::move(headers), end);
  } else {
    proxy.client_headers(*this, stream, std::move(headers), end);
  }
}

void Peer::on_data(h2::Connection&, uint32_t stream, std::string_view data, bool end) {
  if (backend) {
    proxy.upstream_data(*this, stream, data, end);
  } else {
    proxy.client_data(*this, stream, data, end);
  }
}

void Peer::on_reset(h2::Connection&, uint32_t stream, uint32_t error) {
  if (backend) {
    proxy.upstream_reset(*this, stream, error);
  } else {
    proxy.client_reset(*this, stream);
  }
}

void Peer::on_goaway(h2::Connection&, uint32_t last_stream) {
  if (backend) proxy.upstream_goaway(*this, last_stream);
}

std::string describe(const Peer& peer) {
  return peer.backend ? (peer.backend->inner ? std::string("the gateway's inner server") : peer.backend->address)
                      : std::string("the client");
}

Connections::Connections(EventLoop& loop, Proxy& proxy, int per_endpoint, std::string inner,
                         const SocketAddress& socket)
    : loop_(loop), proxy_(proxy), per_endpoint_(std::max(1, per_endpoint)) {
  inner_.inner = true;
  inner_.address = std::move(inner);
  inner_.socket = socket;
}

void Connections::accept_all(int listener) {
  for (;;) {
    const int fd = accept_one(listener);
    if (fd < 0) return;
    add(std::make_unique<Peer>(proxy_, fd, nullptr), EPOLLIN);
  }
}

Peer* Connections::add(std::unique_ptr<Peer> peer, uint32_t events) {
  loop_.add(peer->fd, events, peer.get());
  peer->writing = events & EPOLLOUT;
  Peer* raw = peer.get();
  peers_[peer->fd] = std::move(peer);
  return raw;
}

void Connections::io(Peer& peer, uint32_t events) {
  if (peer.dead) return;
  if (!peer.connected) {
    const int error = socket_error(peer.fd);
    if (error != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      close(peer, "failed to connect to " + peer.backend->address + ": " + std::strerror(error ? error : ECONNREFUSED));
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
          close(peer, "the connection to " + describe(peer) + " failed (HTTP/2 protocol error)");
          return;
        }
        if (peer.dead) return;
        if (static_cast<size_t>(got) < sizeof buffer) break;
        continue;
      }
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
      close(peer, describe(peer) + " closed the connection");
      return;
    }
  }
}

void Connections::flush() {
  std::vector<Peer*> live;
  live.reserve(peers_.size());
  for (auto& [fd, peer] : peers_) live.push_back(peer.get());
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
  for (Peer* peer : idle) close(*peer, "");
  graveyard_.clear();
}

void Connections::write(Peer& peer) {
  if (!peer.connected) return;
  std::string& out = peer.h2.output();
  while (peer.sent < out.size()) {
    const ssize_t wrote = ::send(peer.fd, out.data() + peer.sent, out.size() - peer.sent, MSG_NOSIGNAL);
    if (wrote > 0) {
      peer.sent += static_cast<size_t>(wrote);
      continue;
    }
    if (wrote < 0 && (errno == EAGAIN || errno == EINTR)) break;
    close(peer, describe(peer) + " closed the connection");
    return;
  }
  if (peer.sent == out.size()) {
    out.clear();
    peer.sent = 0;
  }
  const bool want = peer.sent < out.size();
  if (want != peer.writing) {
    loop_.modify(peer.fd, want ? EPOLLIN | EPOLLOUT : EPOLLIN, &peer);
    peer.writing = want;
  }
}

void Connections::goaway_clients() {
  for (auto& [fd, peer] : peers_) {
    if (!peer->backend) peer->h2.goaway(h2::kNoError);
  }
}

void Connections::close_all() {
  for (auto& [fd, peer] : peers_) ::close(fd);
  peers_.clear();
}

void Connections::close(Peer& peer, const std::string& why) {
  if (peer.dead) return;
  peer.dead = true;
  loop_.remove(peer.fd);
  auto node = peers_.extract(peer.fd);  // before the fd can be reused
  graveyard_.push_back(std::move(node.mapped()));
  ::close(peer.fd);
  if (peer.backend) {
    auto& list = peer.backend->peers;
    list.erase(std::remove(list.begin(), list.end(), &peer), list.end());
    auto legs = std::move(peer.legs);
    for (auto& [stream, call] : legs) {
      call->up = nullptr;
      proxy_.upstream_lost(*call, !peer.connected, why.empty() ? describe(peer) + " went away" : why);
    }
  } else {
    proxy_.client_gone(std::move(peer.calls));
  }
}

Peer* Connections::connect(Backend& backend) {
  const int fd = connect_to(backend.socket);
  if (fd < 0) return nullptr;
  Peer* peer = add(std::make_unique<Peer>(proxy_, fd, &backend), EPOLLIN | EPOLLOUT);
  backend.peers.push_back(peer);
  return peer;
}

Peer* Connections::peer_for(Backend& backend) {
  Peer* best = nullptr;
  for (Peer* peer : backend.peers) {
    if (peer->h2.going_away() || peer->h2.failed()) continue;
    if (peer->h2.streams() >= peer->h2.peer_max_streams()) continue;
    if (!best || peer->h2.streams() < best->h2.streams()) best = peer;
  }
  const size_t limit = backend.inner ? 4 : static_cast<size_t>(per_endpoint_);
  if (best && (best->h2.streams() == 0 || backend.peers.size() >= limit)) return best;
  Peer* fresh = connect(backend);
  return fresh ? fresh : best;
}

Backend& Connections::backend_of(const Target& target) {
  auto& slot = backends_[target.address];
  if (!slot) {
    slot = std::make_unique<Backend>();
    slot->address = target.address;
    slot->socket = target.socket;
  }
  slot->orphan = false;
  return *slot;
}

void Connections::attempt_ended(const std::string& address) {
  const auto found = backends_.find(address);
  if (found != backends_.end() && --found->second->in_flight == 0 && found->second->orphan) retire_orphans();
}

void Connections::sweep(const std::unordered_set<std::string>& named) {
  for (auto& [address, backend] : backends_) backend->orphan = !named.count(address);
  retire_orphans();
}

void Connections::retire_orphans() {
  for (auto it = backends_.begin(); it != backends_.end();) {
    Backend& backend = *it->second;
    if (!backend.orphan || backend.in_flight) {
      ++it;
      continue;
    }
    auto peers_left = backend.peers;
    for (Peer* peer : peers_left) close(*peer, "");
    it = backends_.erase(it);
  }
}

}  // namespace astra::gateway
