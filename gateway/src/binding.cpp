// gateway._core: the Python binding of the routing core and the fast lane. Thin on
// purpose: the logic is in wire.cpp, picker.cpp, router.cpp and lane.cpp (and the parts
// it names);
// gateway/_picker.py and gateway/_router.py are the pure-Python twin of the routing
// core's API (the fast lane has none: without it the grpc.aio server takes every call).
#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "hpack.hpp"
#include "lane.hpp"
#include "picker.hpp"
#include "router.hpp"
#include "wire.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using astra::gateway::Lane;
using astra::gateway::Picker;
using astra::gateway::RetryRules;
using astra::gateway::Router;

namespace {

std::string_view view(const nb::bytes& data) { return {data.c_str(), data.size()}; }

nb::str utf8(std::string_view text) {
  return nb::steal<nb::str>(PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace"));
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "The gateway's routing core in C++ (see gateway._picker and gateway._router).";
  m.attr("SCALE") = astra::gateway::kScale;
  m.attr("MAX_WEIGHT") = astra::gateway::kMaxWeight;
  m.attr("MALFORMED") = astra::gateway::kMalformed;
  m.attr("UNKNOWN") = astra::gateway::kUnknown;
  m.attr("NO_ENDPOINT") = astra::gateway::kNoEndpoint;

  m.def(
      "model_of",
      [](const nb::bytes& request) {
        astra::gateway::ModelRef ref;
        if (!astra::gateway::read_model(view(request), ref)) {
          throw nb::value_error("not a serialized ModelInferRequest");
        }
        return nb::make_tuple(utf8(ref.name), utf8(ref.version));
      },
      "request"_a);

  nb::class_<Picker>(m, "Picker")
      .def(nb::init<>())
      .def("update", &Picker::update, "changes"_a)
      .def("pick", &Picker::pick)
      .def("skip", &Picker::skip, "count"_a)
      .def("weights", &Picker::weights)
      .def("__len__", &Picker::size)
      .def("__contains__", &Picker::contains, "slot"_a)
      .def(
          "lag",
          [](const Picker& picker, int64_t slot) {
            if (!picker.contains(slot)) throw nb::key_error(std::to_string(slot).c_str());
            return picker.lag(slot);
          },
          "slot"_a)
      .def_prop_ro("virtual_time", &Picker::virtual_time);

  nb::class_<Router>(m, "Router")
      .def(nb::init<>())
      .def("set", &Router::set, "name"_a, "version"_a, "picker"_a.none())
      .def("get", &Router::get, "name"_a, "version"_a)
      .def("route", [](const Router& router, const nb::bytes& request) { return router.route(view(request)); },
           "request"_a)
      .def("__len__", &Router::size);

  // HPACK, for its tests (RFC 7541 Appendix C).
  nb::class_<astra::gateway::hpack::Decoder>(m, "HpackDecoder")
      .def(nb::init<size_t>(), "max_size"_a = 4096)
      .def(
          "decode",
          [](astra::gateway::hpack::Decoder& decoder, const nb::bytes& block) {
            astra::gateway::hpack::Headers headers;
            if (!decoder.decode(view(block), headers)) throw nb::value_error("malformed header block");
            nb::list out;
            for (const auto& [name, value] : headers) out.append(nb::make_tuple(utf8(name), utf8(value)));
            return out;
          },
          "block"_a)
      .def_prop_ro("table_size", &astra::gateway::hpack::Decoder::table_size)
      .def_prop_ro("table_entries", &astra::gateway::hpack::Decoder::table_entries);
  m.def(
      "hpack_encode",
      [](const std::vector<std::pair<std::string, std::string>>& headers) {
        std::string out;
        astra::gateway::hpack::encode(headers, out);
        return nb::bytes(out.data(), out.size());
      },
      "headers"_a);

  // The rules come from gateway/_rules.py's RetryRules (gateway/_lane.py hands them over).
  nb::class_<RetryRules>(m, "RetryRules")
      .def(nb::init<std::string, int, std::string, std::vector<std::string>, const std::vector<int>&,
                    const std::vector<int>&, const std::vector<int>&>(),
           nb::kw_only(), "refused_trailer"_a, "refused_code"_a, "idempotent_key"_a, "idempotent_values"_a,
           "idempotent_retry"_a, "weight_errors"_a, "replica_faults"_a);

  nb::class_<Lane>(m, "Lane")
      .def(
          "__init__",
          [](Lane* self, const Router& router, const std::string& host, int port, const std::string& inner_host,
             int inner_port, const RetryRules& rules, bool forward, int connections) {
            new (self) Lane(router, rules, {host, port, inner_host, inner_port, forward, connections});
          },
          "router"_a, "host"_a, "port"_a, "inner_host"_a, "inner_port"_a, nb::kw_only(), "rules"_a,
          "forward"_a = true, "connections"_a = 1, nb::keep_alive<1, 2>())
      .def_prop_ro("port", &Lane::port)
      .def_prop_ro("event_fd", &Lane::event_fd)
      .def("set_slot", &Lane::set_slot, "slot"_a, "address"_a)
      .def("take_stats",
           [](Lane& lane) {
             nb::list out;
             for (const auto& s : lane.take_stats()) {
               out.append(nb::make_tuple(s.slot, s.in_flight, s.samples, s.sample_seconds, s.failed,
                                         s.failed_seconds));
             }
             return out;
           })
      .def("take_events",
           [](Lane& lane) {
             nb::list out;
             for (const auto& e : lane.take_events()) {
               out.append(nb::make_tuple(e.slot, utf8(e.address), static_cast<int>(e.kind)));
             }
             return out;
           })
      .def("stop_accepting", &Lane::stop_accepting)
      .def("active", &Lane::active)
      .def("close", &Lane::close, nb::call_guard<nb::gil_scoped_release>());
}
