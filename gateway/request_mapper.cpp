#include "gateway/request_mapper.hpp"

#include <charconv>
#include <cmath>

#include "common/errors.hpp"
#include "common/frames.hpp"
#include "common/http_headers.hpp"
#include "common/ids.hpp"

namespace courier::gateway {

std::optional<Route> route(std::string_view target) {
  if (target.empty() || target.front() != '/') return std::nullopt;
  const auto rest = target.substr(1);
  const auto end = rest.find_first_of("/?");
  const auto service = rest.substr(0, end);
  if (!protocol::valid_service_name(service)) return std::nullopt;
  Route r;
  r.service = std::string(service);
  if (end == std::string_view::npos) {
    r.target.push_back('/');  // not `= "/"`: g++ 12 warns falsely there (GCC PR 105651)
  } else if (rest[end] == '?') {
    r.target.reserve(1 + rest.size() - end);
    r.target += '/';
    r.target.append(rest.substr(end));
  } else {
    r.target = std::string(rest.substr(end));
  }
  return r;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::optional<std::chrono::milliseconds> request_budget(const ServiceConfig& service,
                                                        std::string_view header) {
  if (header.empty()) return service.timeout;
  double seconds = 0;
  const auto [ptr, ec] = std::from_chars(header.data(), header.data() + header.size(), seconds);
  if (ec != std::errc{} || ptr != header.data() + header.size() || !std::isfinite(seconds) ||
      seconds <= 0) {
    return std::nullopt;
  }
  const auto asked = std::chrono::milliseconds(
      static_cast<long long>(std::ceil(std::min(seconds, 86400.0) * 1000)));
  return std::min(asked, service.timeout);
}

Headers forwarded_headers(const HttpRequest& request, std::string_view client_address) {
  Headers headers;
  headers.reserve(16);
  std::string xff;
  for (const auto& field : request) {
    const auto name = field.name_string();
    const auto value = field.value();
    if (iequals(name, "x-forwarded-for")) {
      if (!xff.empty()) xff += ", ";
      xff.append(value.data(), value.size());
      continue;
    }
    // Only the gateway's own authentication may name a subject.
    if (iequals(name, kSubjectHeader)) continue;
    headers.push_back({std::string(name), std::string(value)});
  }
  headers = end_to_end(std::move(headers));
  if (!client_address.empty()) {
    if (!xff.empty()) xff += ", ";
    xff += client_address;
  }
  if (!xff.empty()) headers.push_back({"X-Forwarded-For", std::move(xff)});
  return headers;
}

MappedRequest to_envelope(HttpRequest& request, EnvelopeContext context) {
  const auto& service = *context.service;
  MappedRequest out;
  const auto given_id = request["X-Request-ID"];
  out.request_id = valid_request_id(given_id) ? std::string(given_id) : to_hex(context.id);
  const auto budget = request_budget(service, request["X-Request-Timeout"]);
  if (!budget) {
    out.error = error_response(static_cast<int>(ErrorKind::kBadRequest), service.name,
                               "X-Request-Timeout must be a positive number of seconds", &request,
                               out.request_id);
    return out;
  }
  out.budget = *budget;

  auto& envelope = out.envelope;
  envelope.id = context.id;
  envelope.service = service.name;
  envelope.method = std::string(request.method_string());
  envelope.target = std::move(context.target);
  envelope.headers = forwarded_headers(request, context.client_address);
  if (context.strip_api_key) {
    std::erase_if(envelope.headers, [](const Header& h) { return iequals(h.name, "x-api-key"); });
  }
  if (!context.subject.empty()) {
    envelope.headers.push_back({std::string(kSubjectHeader), std::string(context.subject)});
  }
  // The upstream sees the id we settled on, whatever the client sent.
  std::erase_if(envelope.headers, [](const Header& h) { return iequals(h.name, "x-request-id"); });
  envelope.body = std::move(request.body());
  envelope.deadline_ms = context.now_ms + static_cast<std::uint64_t>(budget->count());
  envelope.request_id = out.request_id;

  // The frames' fields come from the envelope they carry, retry-safe flag included: computed
  // here once, for this request's whole life (the broker requeues on it, failover re-sends it).
  out.header = protocol::request_header(envelope);
  // The config outlives the mapped request; envelope.service may move with it.
  out.header.service = service.name;
  return out;
}

namespace {

bool has_no_body(unsigned status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

}  // namespace

HttpResponse to_http(ReplyEnvelope&& reply, const HttpRequest& request,
                     std::string_view request_id) {
  HttpResponse res;
  res.result(reply.status);
  res.version(request.version());
  std::string content_length;
  for (auto& h : reply.headers) {
    if (iequals(h.name, "content-length")) {
      content_length = h.value;
      continue;
    }
    if (is_hop_by_hop(h.name) || iequals(h.name, "x-request-id")) continue;
    res.insert(h.name, h.value);
  }
  if (!request_id.empty()) res.set("X-Request-ID", request_id);
  res.keep_alive(request.keep_alive());
  if (request.method() == http::verb::head) {
    // The upstream's length describes the body a GET would have: keep it, send no body.
    if (!content_length.empty()) res.set(http::field::content_length, content_length);
  } else if (!has_no_body(reply.status)) {
    res.body() = std::move(reply.body);
    res.content_length(res.body().size());
  }
  return res;
}

HttpResponse error_response(int kind, std::string_view service, std::string_view detail,
                            const HttpRequest* request, std::string_view request_id) {
  const auto k = static_cast<ErrorKind>(kind);
  HttpResponse res;
  res.result(error_status(k));
  res.version(request ? request->version() : 11);
  res.set(http::field::content_type, "application/json");
  if (!request_id.empty()) res.set("X-Request-ID", request_id);
  if (k == ErrorKind::kOverloaded) res.set(http::field::retry_after, "1");
  res.keep_alive(request && request->keep_alive());
  if (!request || request->method() != http::verb::head) {
    res.body() = error_json(error_code(k, service), error_message(k), detail);
  }
  res.content_length(res.body().size());
  return res;
}

}  // namespace courier::gateway
