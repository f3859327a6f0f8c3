// The lane's event loop (epoll, with an eventfd to wake it from other threads) and the
// socket calls it makes. Plain Linux, nothing of HTTP/2.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace astra::gateway {

// A resolved `host:port`.
struct SocketAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
};

// `host:port` (host may be [v6]) resolved to its first address; false if it does not resolve.
bool resolve(const std::string& address, SocketAddress& out);

class EventLoop {
 public:
  // Throws std::runtime_error when epoll or the eventfd cannot be made.
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` for `events`; wait() reports it with `tag`.
  void add(int fd, uint32_t events, void* tag);
  void modify(int fd, uint32_t events, void* tag);
  void remove(int fd);
  // The ready events (at most `capacity`); blocks until there is one.
  int wait(epoll_event* ready, int capacity);
  // Wakes wait() from any thread: it reports wake_tag().
  void wake();
  // Clears the wakeups (on the loop thread, once wait() reported wake_tag()).
  void woken();
  void* wake_tag() { return &wake_tag_; }

 private:
  int epoll_ = -1, wake_ = -1;
  int wake_tag_ = 0;
};

// A non-blocking listening socket on `host:port` (port 0: any free one); sets `bound`
// to its port. Throws std::runtime_error when it cannot listen.
int listen_on(const std::string& host, int port, int& bound);
// A non-blocking accepted connection (TCP_NODELAY), or -1 when none is waiting.
int accept_one(int listener);
// A non-blocking connection under way to `to` (TCP_NODELAY), or -1.
int connect_to(const SocketAddress& to);
// The pending error of a connecting socket (0: connected).
int socket_error(int fd);
// Writes one eventfd increment.
void poke(int fd);

}  // namespace astra::gateway
