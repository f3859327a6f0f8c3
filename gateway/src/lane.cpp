#include "lane.hpp"

#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <utility>

#include "connection.hpp"
#include "loop.hpp"
#include "proxy.hpp"
#include "slots.hpp"

namespace astra::gateway {

struct Lane::Impl {
  SlotTable slots;  // shared with Python's thread
  EventLoop loop;
  Proxy proxy;
  Connections connections;  // the loop thread's, as is the proxy
  int listener = -1;
  int port = 0;
  int listener_tag = 0;
  std::atomic<bool> stopping{false}, closing{false};
  std::thread thread;

  Impl(const Router& router, RetryRules rules, const Options& options, const SocketAddress& inner)
      : proxy(router, std::move(rules), slots, connections, options.forward),
        connections(loop, proxy, options.connections,
                    options.inner_host + ":" + std::to_string(options.inner_port), inner) {}

  void run() {
    epoll_event ready[256];
    while (!closing.load()) {
      const int count = loop.wait(ready, 256);
      for (int k = 0; k < count; ++k) {
        void* tag = ready[k].data.ptr;
        if (tag == &listener_tag) {
          connections.accept_all(listener);
        } else if (tag == loop.wake_tag()) {
          woken();
        } else {
          connections.io(*static_cast<Peer*>(tag), ready[k].events);
        }
      }
      connections.flush();
    }
    connections.close_all();
  }

  // Python's thread asked for something: stop listening, or sweep the endpoints.
  void woken() {
    loop.woken();
    if (stopping.load() && listener >= 0) {
      loop.remove(listener);
      ::close(listener);
      listener = -1;
      connections.goaway_clients();
    }
    if (slots.sweep_wanted()) connections.sweep(slots.named());
  }
};

namespace {

SocketAddress inner_address(const Lane::Options& options) {
  const std::string address = options.inner_host + ":" + std::to_string(options.inner_port);
  SocketAddress out;
  if (!resolve(address, out)) throw std::runtime_error("cannot resolve " + address);
  return out;
}

}  // namespace

Lane::Lane(const Router& router, RetryRules rules, Options options)
    : impl_(std::make_unique<Impl>(router, std::move(rules), options, inner_address(options))) {
  Impl& lane = *impl_;
  lane.listener = listen_on(options.host, options.port, lane.port);
  lane.loop.add(lane.listener, EPOLLIN, &lane.listener_tag);
  lane.thread = std::thread([&lane] { lane.run(); });
}

Lane::~Lane() { close(); }

int Lane::port() const { return impl_->port; }

void Lane::set_slot(int64_t slot, const std::string& address) {
  impl_->slots.set(slot, address);
  if (address.empty() && impl_->thread.joinable()) impl_->loop.wake();
}

std::vector<SlotStats> Lane::take_stats() { return impl_->slots.take_stats(); }

std::vector<SlotEvent> Lane::take_events() { return impl_->slots.take_events(); }

int Lane::event_fd() const { return impl_->slots.event_fd(); }

void Lane::stop_accepting() {
  impl_->stopping = true;
  if (impl_->thread.joinable()) impl_->loop.wake();
}

int64_t Lane::active() const { return impl_->proxy.active(); }

void Lane::close() {
  Impl& lane = *impl_;
  if (!lane.thread.joinable()) return;
  lane.closing = true;
  lane.loop.wake();
  lane.thread.join();
  if (lane.listener >= 0) ::close(lane.listener);
  lane.listener = -1;
}

}  // namespace astra::gateway
