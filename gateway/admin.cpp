#include "gateway/admin.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "common/errors.hpp"
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

constexpr std::string_view kReadyzPrefix = "/readyz/";

bool get_or_head(http::verb method) {
  return method == http::verb::get || method == http::verb::head;
}

bool probe_path(std::string_view target) {
  return target == "/healthz" || target == "/readyz" || target.starts_with(kReadyzPrefix);
}

bool admin_path(std::string_view target) {
  return probe_path(target) || target == "/services" || target == "/services/history" ||
         target == "/metrics" || target == "/dashboard";
}

HttpResponse error(http::status status, std::string_view code, std::string_view message,
                   std::string_view detail, const HttpRequest& req) {
  HttpResponse res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = error_json(code, message, detail);
  res.prepare_payload();
  return res;
}

// Live workers of `name` across the connected brokers (0 when none knows it).
int workers_of(const nlohmann::json& services, const std::string& name) {
  const auto it = services.find(name);
  return it == services.end() ? 0 : it->value("workers", 0);
}

std::string dump(const nlohmann::json& j) {
  // Replace invalid UTF-8 rather than throw: a service name in the path is the client's.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

bool is_probe_endpoint(http::verb method, std::string_view target) {
  return get_or_head(method) && probe_path(target);
}

bool is_admin_endpoint(http::verb method, std::string_view target) {
  return get_or_head(method) && admin_path(target);
}

HttpResponse admin_response(const HttpRequest& request, const AdminState& state) {
  const auto target = request.target();
  if (!admin_path(target)) {
    return error(http::status::not_found, "NOT_FOUND", "No such admin endpoint",
                 "the admin listener serves /healthz, /readyz, /readyz/<service>, /metrics, "
                 "/services, /services/history and /dashboard",
                 request);
  }
  if (!get_or_head(request.method())) {
    auto res = error(http::status::method_not_allowed, "METHOD_NOT_ALLOWED", "Method not allowed",
                     "admin endpoints answer GET and HEAD", request);
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  if (target == "/healthz") return healthz(request);
  if (target == "/dashboard") return dashboard(request);
  if (target == "/metrics") return metrics(request, state);
  if (target == "/readyz") return readyz(request, state);
  if (target == "/services/history") return service_history(request, state);
  if (target.starts_with(kReadyzPrefix)) {
    return readyz_service(request, state, target.substr(kReadyzPrefix.size()));
  }
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
  const auto required = [&](const std::string& name) {
    return state.required.empty() ||
           std::find(state.required.begin(), state.required.end(), name) != state.required.end();
  };
  nlohmann::json per_service = nlohmann::json::object();
  std::vector<std::string> ready, missing;
  for (const auto& [name, svc] : state.settings.services) {
    const int workers = state.gateway.broker_connected ? workers_of(services, name) : 0;
    per_service[name] = {{"workers", workers}, {"required", required(name)}};
    if (workers > 0) {
      ready.push_back(name);
    } else if (required(name)) {
      missing.push_back(name);
    }
  }
  nlohmann::json body = {{"status", "ready"}};
  if (!state.gateway.broker_connected) {
    body = {{"status", "not ready"}, {"reason", "broker not connected"}};
  } else if (!missing.empty()) {
    body = {{"status", "not ready"}, {"reason", "no workers"}};
  }
  body["ready"] = ready;
  body["missing"] = missing;
  body["services"] = std::move(per_service);
  return json_response(body["status"] == "ready" ? 200 : 503, dump(body), request);
}

HttpResponse readyz_service(const HttpRequest& request, const AdminState& state,
                            std::string_view service) {
  const std::string name(service);
  if (!state.settings.find(name)) {
    return error(http::status::not_found, error_code(ErrorKind::kUnknownService, ""),
                 error_message(ErrorKind::kUnknownService),
                 "no service '" + name + "' is configured", request);
  }
  nlohmann::json body = {{"service", name}};
  if (!state.gateway.broker_connected) {
    body.update({{"status", "not ready"}, {"reason", "broker not connected"}, {"workers", 0}});
  } else {
    const auto stats = merge_broker_stats(state.brokers);
    const int workers = workers_of(stats["services"], name);
    body["status"] = workers > 0 ? "ready" : "not ready";
    if (workers == 0) body["reason"] = "no workers";
    body["workers"] = workers;
  }
  return json_response(body["status"] == "ready" ? 200 : 503, dump(body), request);
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
