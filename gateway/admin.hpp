// The gateway's own endpoints (/healthz, /readyz, /services, /services/history, /metrics,
// /dashboard), answered
// without the broker and without credentials: pure functions of the snapshots they show.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request_mapper.hpp"
#include "gateway/service_stats.hpp"

namespace courier::gateway {

// GET or HEAD of one of the gateway's own paths; anything else goes to a service.
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
};

// The answer to an admin request (is_admin_endpoint holds); HEAD bodies are the caller's to drop.
HttpResponse admin_response(const HttpRequest& request, const AdminState& state);

HttpResponse healthz(const HttpRequest& request);
HttpResponse dashboard(const HttpRequest& request);
HttpResponse metrics(const HttpRequest& request, const AdminState& state);
// Ready when some broker answers and, across the connected brokers, every configured service has
// a live worker; 503 with the reason otherwise.
HttpResponse readyz(const HttpRequest& request, const AdminState& state);
// Configured services joined with what the brokers report and the gateway's own counts.
HttpResponse services(const HttpRequest& request, const AdminState& state);
// This gateway's last 15 minutes per service (ServiceStats::history), for the dashboard's plots.
HttpResponse service_history(const HttpRequest& request, const AdminState& state);

}  // namespace courier::gateway
