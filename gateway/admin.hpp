// The gateway's own endpoints (/healthz, /readyz, /readyz/<service> on both listeners; /services,
// /services/history, /metrics, /dashboard on the admin listener only), answered without the
// broker and without credentials: pure functions of the snapshots they show.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request_mapper.hpp"
#include "gateway/service_stats.hpp"

namespace courier::gateway {

// GET or HEAD of /healthz, /readyz or /readyz/<anything>: answered on the public port too, where
// load balancers probe. Anything else there goes to a service.
bool is_probe_endpoint(http::verb method, std::string_view target);
// A probe, or GET or HEAD of /services, /metrics or /dashboard: the admin listener's endpoints.
bool is_admin_endpoint(http::verb method, std::string_view target);

// What the admin endpoints show, read once per request.
struct AdminState {
  const Settings& settings;
  const GatewayMetrics& metrics;
  const ServiceStats& service_stats;
  GatewaySnapshot gateway;
  std::uint64_t requests = 0;  // requests handled, this one included
  std::vector<BrokerStatus> brokers;
  ServiceHistory::Clock::time_point now = ServiceHistory::Clock::now();
  // The services /readyz needs a worker for (gateway.required_services); empty: every one.
  std::span<const std::string> required = {};
};

// The answer to any request on the admin listener: its endpoint, 404 NOT_FOUND JSON for an
// unknown path, 405 for another method. HEAD bodies are the caller's to drop.
HttpResponse admin_response(const HttpRequest& request, const AdminState& state);

HttpResponse healthz(const HttpRequest& request);
HttpResponse dashboard(const HttpRequest& request);
HttpResponse metrics(const HttpRequest& request, const AdminState& state);
// Ready when some broker answers and, across the connected brokers, every required service has
// a live worker; 503 with the reason otherwise. The body names the ready and missing services.
HttpResponse readyz(const HttpRequest& request, const AdminState& state);
// /readyz/<service>: that service alone (required or not); 404 for one not configured.
HttpResponse readyz_service(const HttpRequest& request, const AdminState& state,
                            std::string_view service);
// Configured services joined with what the brokers report and the gateway's own counts.
HttpResponse services(const HttpRequest& request, const AdminState& state);
// This gateway's last 15 minutes per service (ServiceStats::history), for the dashboard's plots.
HttpResponse service_history(const HttpRequest& request, const AdminState& state);

}  // namespace courier::gateway
