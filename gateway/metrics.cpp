#include "gateway/metrics.hpp"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/errors.hpp"
#include "common/status.hpp"
#include "gateway/hops.hpp"

namespace courier::gateway {

namespace {

// Courier's error bodies are small; a larger body is not one of them and is not parsed.
constexpr std::size_t kMaxErrorBody = 4096;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::vector<double> gateway_latency_buckets(const Settings& settings,
                                            std::chrono::milliseconds slack) {
  std::chrono::milliseconds largest{0};
  for (const auto& [name, svc] : settings.services) largest = std::max(largest, svc.timeout);
  return metrics::latency_buckets(largest + slack);
}

std::vector<double> hop_buckets(const std::vector<double>& latency_buckets) {
  std::vector<double> out = {0.00001, 0.000025, 0.00005, 0.000075, 0.0001,
                             0.00015, 0.0002,   0.00025, 0.00035,  0.0005};
  for (double b : latency_buckets) {
    if (b > out.back()) out.push_back(b);
  }
  return out;
}

std::string courier_error_code(const HttpResponse& response, const Settings& settings) {
  if (response.result_int() < 400 || response.body().size() > kMaxErrorBody) return {};
  const auto type = response[http::field::content_type];
  if (type.substr(0, 16) != "application/json") return {};
  const auto body = nlohmann::json::parse(response.body(), nullptr, false);
  if (!body.is_object() || body.value("status", "") != "error") return {};
  const auto code_it = body.find("code");
  if (code_it == body.end() || !code_it->is_string()) return {};
  const auto& code = code_it->get_ref<const std::string&>();
  // Only codes of the catalogue: an upstream's look-alike body must not invent label values.
  for (int k = 0; k <= static_cast<int>(ErrorKind::kCancelled); ++k) {
    const auto kind = static_cast<ErrorKind>(k);
    if (error_code(kind, "") == code) return code;
    for (const auto& [name, svc] : settings.services) {
      if (error_code(kind, name) == code) return code;
    }
  }
  return {};
}

GatewayMetrics::GatewayMetrics(std::vector<double> latency_buckets)
    : latency_buckets_(std::move(latency_buckets)),
      hop_buckets_(hop_buckets(latency_buckets_)),
      registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("courier_gateway_requests_total")
                    .Help("HTTP requests answered by the gateway, by service, status and Courier "
                          "error code (empty: the upstream's response)")
                    .Register(*registry_)),
      duration_(prometheus::BuildHistogram()
                    .Name("courier_gateway_request_duration_seconds")
                    .Help("From a fully read request to its response written, by service")
                    .Register(*registry_)),
      bad_responses_(
          prometheus::BuildCounter()
              .Name("courier_gateway_bad_responses_total")
              .Help("Replies refused as invalid HTTP (502 <SVC>_BAD_RESPONSE), by service")
              .Register(*registry_)),
      cancelled_(prometheus::BuildCounter()
                     .Name("courier_gateway_cancelled_total")
                     .Help("Requests cancelled because the client left before the response was "
                           "complete, by service")
                     .Register(*registry_)),
      streams_(prometheus::BuildCounter()
                   .Name("courier_gateway_streams_total")
                   .Help("Streamed responses by service and outcome (complete, truncated, "
                         "cancelled)")
                   .Register(*registry_)),
      timeouts_(prometheus::BuildCounter()
                    .Name("courier_gateway_timeouts_total")
                    .Help("Requests answered 504 <SVC>_TIMEOUT (the gateway's deadline, the "
                          "broker's queue or the worker's upstream), by service")
                    .Register(*registry_)),
      hops_(prometheus::BuildHistogram()
                .Name("courier_gateway_hop_seconds")
                .Help("Time spent in each hop of a request's round trip (from its reply's "
                      "STAMPS; docs/protocol.md), by service and hop")
                .Register(*registry_)),
      hops_unusable_(prometheus::BuildCounter()
                         .Name("courier_gateway_hop_stamps_unusable_total")
                         .Help("Hops not observed because their stamps were missing, out of order "
                               "or over an hour apart (clocks of different hosts), by service")
                         .Register(*registry_)) {
  static_assert(std::tuple_size_v<decltype(ServiceSeries::hops)> == kHops.size());
}

GatewayMetrics::ServiceSeries& GatewayMetrics::series_for(std::string_view service) {
  if (const auto it = series_.find(service); it != series_.end()) return it->second;
  return series_.emplace(std::string(service), ServiceSeries{}).first->second;
}

void GatewayMetrics::observe_hops(std::string_view service, const protocol::Stamps& stamps) {
  const auto hops = breakdown(stamps);
  std::lock_guard lock(series_mutex_);
  auto& series = series_for(service);
  if (!series.unusable) {
    const std::string svc(service);
    for (std::size_t i = 0; i < kHops.size(); ++i) {
      series.hops[i] =
          &hops_.Add({{"service", svc}, {"hop", std::string(kHops[i].name)}}, hop_buckets_);
    }
    series.unusable = &hops_unusable_.Add({{"service", svc}});
  }
  for (std::size_t i = 0; i < kHops.size(); ++i) {
    if (hops[i]) {
      series.hops[i]->Observe(static_cast<double>(*hops[i]) / 1e6);
    } else {
      series.unusable->Increment();
    }
  }
}

void GatewayMetrics::observe(std::string_view service, unsigned status, std::string_view code,
                             std::chrono::duration<double> elapsed) {
  std::lock_guard lock(series_mutex_);
  auto& series = series_for(service);
  auto it =
      std::find_if(series.requests.begin(), series.requests.end(),
                   [&](const RequestCounter& c) { return c.status == status && c.code == code; });
  if (it == series.requests.end()) {
    auto& counter = requests_.Add({{"service", std::string(service)},
                                   {"status", std::to_string(status)},
                                   {"code", std::string(code)}});
    it = series.requests.insert(series.requests.end(), {status, std::string(code), &counter});
  }
  it->counter->Increment();
  if (!series.duration) {
    series.duration = &duration_.Add({{"service", std::string(service)}}, latency_buckets_);
  }
  series.duration->Observe(elapsed.count());
  if (status == 504 && ends_with(code, "_TIMEOUT")) {
    if (!series.timeouts) series.timeouts = &timeouts_.Add({{"service", std::string(service)}});
    series.timeouts->Increment();
  }
}

void GatewayMetrics::bad_response(std::string_view service) {
  bad_responses_.Add({{"service", std::string(service)}}).Increment();
}

void GatewayMetrics::cancelled(std::string_view service) {
  cancelled_.Add({{"service", std::string(service)}}).Increment();
}

void GatewayMetrics::stream_finished(std::string_view service, std::string_view outcome) {
  streams_.Add({{"service", std::string(service)}, {"outcome", std::string(outcome)}}).Increment();
}

std::string GatewayMetrics::render(const GatewaySnapshot& s,
                                   const std::vector<BrokerStatus>& brokers) const {
  using prometheus::MetricType;
  auto families = metrics::process_families("gateway");
  const auto gauge = [&](const char* name, const char* help, double value) {
    metrics::add(metrics::family(families, name, help, MetricType::Gauge), {}, value);
  };
  const auto counter = [&](const char* name, const char* help, double value) {
    metrics::add(metrics::family(families, name, help, MetricType::Counter), {}, value);
  };
  gauge("courier_gateway_in_flight", "Requests being handled", static_cast<double>(s.in_flight));
  gauge("courier_gateway_connections", "Open client connections",
        static_cast<double>(s.connections));
  gauge("courier_gateway_streams_open", "Streamed responses being written",
        static_cast<double>(s.streams_open));
  gauge("courier_gateway_broker_connected", "1 while at least one broker answers heartbeats",
        s.broker_connected ? 1 : 0);
  counter("courier_gateway_bad_requests_total",
          "Requests refused while being read (400/413/431, and 401/404 before 100 Continue)",
          static_cast<double>(s.bad_requests));
  counter("courier_gateway_rejected_connections_total", "Connections closed at the limit",
          static_cast<double>(s.rejected_connections));
  counter("courier_gateway_late_replies_total", "Replies that arrived after their deadline",
          static_cast<double>(s.late_replies));
  counter("courier_gateway_failovers_total",
          "Pending requests sent through another broker after theirs was lost",
          static_cast<double>(s.failovers));
  // The gateway's own view of each broker link; what the brokers hold is on their admin ports.
  auto& up = metrics::family(families, "courier_gateway_broker_up",
                             "1 while the broker answers heartbeats, by broker endpoint",
                             MetricType::Gauge);
  for (const auto& b : brokers) metrics::add(up, {{"broker", b.endpoint}}, b.connected ? 1 : 0);

  auto recorded = registry_->Collect();
  families.insert(families.end(), std::make_move_iterator(recorded.begin()),
                  std::make_move_iterator(recorded.end()));
  return metrics::serialize(families);
}

}  // namespace courier::gateway
