#include "gateway/admin.hpp"

#include <nlohmann/json.hpp>
#include <string>

#include "gateway/broker_view.hpp"
#include "gateway/dashboard_html.hpp"

namespace courier::gateway {

namespace {

HttpResponse json_response(unsigned status, std::string body, const HttpRequest& req) {
  HttpResponse res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace

bool is_admin_endpoint(http::verb method, std::string_view target) {
  if (method != http::verb::get && method != http::verb::head) return false;
  return target == "/healthz" || target == "/readyz" || target == "/services" ||
         target == "/services/history" || target == "/metrics" || target == "/dashboard";
}

HttpResponse admin_response(const HttpRequest& request, const AdminState& state) {
  const auto target = request.target();
  if (target == "/healthz") return healthz(request);
  if (target == "/dashboard") return dashboard(request);
  if (target == "/metrics") return metrics(request, state);
  if (target == "/readyz") return readyz(request, state);
  if (target == "/services/history") return service_history(request, state);
  return services(request, state);
}

HttpResponse healthz(const HttpRequest& request) {
  return json_response(200, R"({"status":"ok"})", request);
}

HttpResponse dashboard(const HttpRequest& request) {
  HttpResponse res{http::status::ok, request.version()};
  res.set(http::field::content_type, "text/html; charset=utf-8");
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(request.keep_alive());
  res.body() = std::string(kDashboardHtml);
  res.prepare_payload();
  return res;
}

HttpResponse metrics(const HttpRequest& request, const AdminState& state) {
  HttpResponse res{http::status::ok, request.version()};
  res.set(http::field::content_type, kMetricsContentType);
  res.keep_alive(request.keep_alive());
  res.body() = state.metrics.render(state.gateway, state.brokers);
  res.prepare_payload();
  return res;
}

HttpResponse readyz(const HttpRequest& request, const AdminState& state) {
  const auto stats = merge_broker_stats(state.brokers);
  const auto& services = stats["services"];
  std::vector<std::string> missing;
  for (const auto& [name, svc] : state.settings.services) {
    const auto it = services.find(name);
    if (it == services.end() || it->value("workers", 0) == 0) missing.push_back(name);
  }
  nlohmann::json body;
  if (!state.gateway.broker_connected) {
    body = {{"status", "not ready"}, {"reason", "broker not connected"}};
  } else if (!missing.empty()) {
    body = {{"status", "not ready"}, {"reason", "no workers"}, {"services", missing}};
  } else {
    body = {{"status", "ready"}};
  }
  return json_response(body["status"] == "ready" ? 200 : 503, body.dump(), request);
}

HttpResponse services(const HttpRequest& request, const AdminState& state) {
  const auto stats = merge_broker_stats(state.brokers);
  const auto& services = stats["services"];
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, svc] : state.settings.services) {
    nlohmann::json entry = {{"upstream", svc.upstream.text},
                            {"timeout_s", svc.timeout.count() / 1000.0},
                            {"max_attempts", svc.max_attempts}};
    if (const auto it = services.find(name); it != services.end()) {
      entry.update(*it);
    } else {
      entry.update({{"workers", 0}, {"capacity", 0}, {"in_flight", 0}, {"queue_depth", 0}});
    }
    entry["gateway"] = state.service_stats.snapshot(name);
    out[name] = std::move(entry);
  }
  std::string ids;
  for (const auto& b : stats["brokers"]) {
    if (!b.contains("id")) continue;
    ids += (ids.empty() ? "" : ",") + b["id"].get<std::string>();
  }
  const auto& g = state.gateway;
  nlohmann::json body = {{"broker_connected", g.broker_connected},
                         {"services", std::move(out)},
                         {"broker", {{"id", ids}, {"counters", stats["counters"]}}},
                         {"brokers", stats["brokers"]}};
  body["gateway"] = {{"requests", state.requests},   {"in_flight", g.in_flight},
                     {"connections", g.connections}, {"bad_requests", g.bad_requests},
                     {"timeouts", g.timeouts},       {"late_replies", g.late_replies},
                     {"failovers", g.failovers}};
  return json_response(200, body.dump(2), request);
}

HttpResponse service_history(const HttpRequest& request, const AdminState& state) {
  auto res = json_response(200, state.service_stats.history(state.now).dump(), request);
  res.set(http::field::cache_control, "no-store");
  return res;
}

}  // namespace courier::gateway
