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

namespace {

// "%" hi lo at `i`, the hex digit `lo` in either case (`lo` given in lower case).
bool escape_at(std::string_view s, std::size_t i, char hi, char lo) {
  return i + 2 < s.size() && s[i] == '%' && s[i + 1] == hi && (s[i + 2] | 0x20) == lo;
}

// A separator within a path: '/', and what some servers turn into one ('\', %2F, %5C). Returns
// its length at `i`, 0 if none starts there.
std::size_t separator_at(std::string_view path, std::size_t i) {
  if (path[i] == '/' || path[i] == '\\') return 1;
  if (escape_at(path, i, '2', 'f') || escape_at(path, i, '5', 'c')) return 3;
  return 0;
}

// "." or ".." once percent-encoded dots are decoded and path parameters (from ';' or "%3B")
// cut off.
bool is_dot_segment(std::string_view segment) {
  int dots = 0;
  for (std::size_t i = 0;
       i < segment.size() && segment[i] != ';' && !escape_at(segment, i, '3', 'b'); ++dots) {
    if (dots == 2) return false;
    if (segment[i] == '.') {
      i += 1;
    } else if (escape_at(segment, i, '2', 'e')) {
      i += 3;
    } else {
      return false;
    }
  }
  return dots == 1 || dots == 2;
}

// A header Courier sets or reads itself; a name equal to one of these but for '_' or case is a
// lookalike. Compared with loosely_equal.
constexpr std::string_view kOwnHeaders[] = {
    "x-request-id",
    "x-request-timeout",
    "idempotency-key",
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
};

// What a client says about the hops before the gateway: believed from a trusted proxy only.
constexpr std::string_view kForwardingHeaders[] = {
    "forwarded",           "x-real-ip",      "x-client-ip",   "true-client-ip",
    "x-cluster-client-ip", "x-original-url", "x-rewrite-url",
};

bool is_forwarding_header(std::string_view name) {
  if (loosely_starts_with(name, "x-forwarded-")) return true;
  for (auto h : kForwardingHeaders) {
    if (loosely_equal(name, h)) return true;
  }
  return false;
}

bool is_lookalike(std::string_view name, std::string_view auth_header) {
  if (name.find('_') == std::string_view::npos) return false;
  for (auto h : kOwnHeaders) {
    if (loosely_equal(name, h)) return true;
  }
  return !auth_header.empty() && loosely_equal(name, auth_header);
}

}  // namespace

std::string_view path_problem(std::string_view target) {
  const auto path = target.substr(0, target.find('?'));
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= path.size();) {
    const std::size_t sep = i < path.size() ? separator_at(path, i) : 1;
    if (sep == 0) {
      ++i;
      continue;
    }
    if (is_dot_segment(path.substr(begin, i - begin))) {
      return "the path must not contain . or .. segments (raw or percent-encoded)";
    }
    i += sep;
    begin = i;
  }
  return {};
}

Headers forwarded_headers(const HttpRequest& request, const ForwardingRules& rules) {
  Headers headers;
  headers.reserve(16);
  std::string xff;
  bool has_proto = false;
  bool has_host = false;
  for (const auto& field : request) {
    const auto name = field.name_string();
    const auto value = field.value();
    // Only the gateway's own authentication may name a subject, and no client speaks for Courier.
    if (loosely_starts_with(name, "x-courier-")) continue;
    if (is_lookalike(name, rules.auth_header)) continue;
    if (is_forwarding_header(name)) {
      if (!rules.trusted_peer || name.find('_') != std::string_view::npos) continue;
      if (iequals(name, "x-forwarded-for")) {
        if (!xff.empty()) xff += ", ";
        xff.append(value.data(), value.size());
        continue;
      }
      has_proto = has_proto || iequals(name, "x-forwarded-proto");
      has_host = has_host || iequals(name, "x-forwarded-host");
    }
    headers.push_back({std::string(name), std::string(value)});
  }
  headers = end_to_end(std::move(headers));
  if (!rules.client_address.empty()) {
    if (!xff.empty()) xff += ", ";
    xff += rules.client_address;
  }
  if (!xff.empty()) headers.push_back({"X-Forwarded-For", std::move(xff)});
  // The gateway speaks plain HTTP; a trusted proxy in front may have terminated TLS and says so.
  if (!has_proto) headers.push_back({"X-Forwarded-Proto", "http"});
  if (const auto host = request[http::field::host]; !has_host && !host.empty()) {
    headers.push_back({"X-Forwarded-Host", std::string(host)});
  }
  return headers;
}

MappedRequest to_envelope(HttpRequest& request, EnvelopeContext context) {
  const auto& service = *context.service;
  MappedRequest out;
  const auto given_id = request["X-Request-ID"];
  if (valid_request_id(given_id)) {
    out.request_id = std::string(given_id);
  } else if (!context.generated_request_id.empty()) {
    out.request_id = std::move(context.generated_request_id);
  } else {
    out.request_id = to_hex(context.id);
  }
  std::vector<std::string_view> traceparents;
  std::vector<std::string_view> tracestates;
  for (const auto& field : request) {
    if (iequals(field.name_string(), "traceparent")) traceparents.push_back(field.value());
    if (iequals(field.name_string(), "tracestate")) tracestates.push_back(field.value());
  }
  auto trace = trace::next_hop(traceparents, tracestates, context.trace_ids);
  out.trace_id = trace.trace_id;
  const auto bad_request = [&](std::string_view detail) {
    return error_response(static_cast<int>(ErrorKind::kBadRequest), service.name, detail, &request,
                          out.request_id);
  };
  if (const auto problem = path_problem(context.target); !problem.empty()) {
    out.error = bad_request(problem);
    return out;
  }
  const auto budget = request_budget(service, request["X-Request-Timeout"]);
  if (!budget) {
    out.error = bad_request("X-Request-Timeout must be a positive number of seconds");
    return out;
  }
  out.budget = *budget;

  auto& envelope = out.envelope;
  envelope.id = context.id;
  envelope.service = service.name;
  envelope.method = std::string(request.method_string());
  envelope.target = std::move(context.target);
  const bool trusted =
      context.trusted_proxies && context.trusted_proxies->contains(context.client_address);
  const std::string_view auth_header =
      service.auth_mode == AuthMode::kApiKey ? std::string_view(service.auth_header) : "";
  envelope.headers = forwarded_headers(request, {.client_address = context.client_address,
                                                 .trusted_peer = trusted,
                                                 .auth_header = auth_header});
  if (context.strip_api_key) {
    std::erase_if(envelope.headers, [](const Header& h) { return iequals(h.name, "x-api-key"); });
  }
  if (!context.subject.empty()) {
    envelope.headers.push_back({std::string(kSubjectHeader), std::string(context.subject)});
  }
  // The upstream sees the id we settled on, whatever the client sent.
  std::erase_if(envelope.headers, [](const Header& h) { return iequals(h.name, "x-request-id"); });
  // ... and the trace context this hop settled on.
  std::erase_if(envelope.headers, [](const Header& h) {
    return iequals(h.name, "traceparent") || iequals(h.name, "tracestate");
  });
  envelope.headers.push_back({"traceparent", std::move(trace.traceparent)});
  if (!trace.tracestate.empty()) {
    envelope.headers.push_back({"tracestate", std::move(trace.tracestate)});
  }
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

bool is_decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits always fit in 64 bits
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::string reply_problem(const ReplyEnvelope& reply, const HttpRequest& request) {
  if (reply.status < 200 || reply.status > 599) {
    return "status " + std::to_string(reply.status) + " is not a final HTTP status";
  }
  if (reply.headers.size() > kMaxReplyHeaders) {
    return std::to_string(reply.headers.size()) + " header fields, more than " +
           std::to_string(kMaxReplyHeaders);
  }
  std::size_t bytes = 0;
  const Header* length = nullptr;
  for (std::size_t i = 0; i < reply.headers.size(); ++i) {
    const auto& h = reply.headers[i];
    if (!is_token(h.name)) return "header field " + std::to_string(i + 1) + ": invalid name";
    if (!is_field_value(h.value)) {
      return "header field " + std::to_string(i + 1) + ": control character in the value";
    }
    bytes += h.name.size() + h.value.size() + 4;
    if (iequals(h.name, "content-length")) {
      if (length && length->value != h.value) return "conflicting Content-Length fields";
      length = &h;
    }
  }
  if (bytes > kMaxReplyHeaderBytes) {
    return std::to_string(bytes) + " bytes of header fields, more than " +
           std::to_string(kMaxReplyHeaderBytes);
  }
  if (length && request.method() == http::verb::head && !is_decimal(length->value)) {
    return "Content-Length is not a decimal number";
  }
  return {};
}

HttpResponse to_http(ReplyEnvelope&& reply, const HttpRequest& request,
                     std::string_view request_id) {
  HttpResponse res;
  res.result(reply.status);
  res.version(request.version());
  std::string content_length;
  for (const auto& h : reply.headers) {
    if (iequals(h.name, "content-length")) content_length = h.value;
  }
  // The gateway frames the response itself: the reply's framing and hop-by-hop fields (and those
  // its Connection names) would contradict ours.
  for (auto& h : end_to_end(std::move(reply.headers))) {
    if (iequals(h.name, "x-request-id")) continue;
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

ClientReply checked_response(ReplyEnvelope&& reply, const HttpRequest& request,
                             std::string_view service, std::string_view request_id) {
  ClientReply out;
  out.attempts = reply.attempts;
  out.worker = reply.worker_id;
  if (reply.attempts > 0) out.upstream_us = reply.upstream_us;
  if (reply.error) out.code = reply.error->code;
  out.problem = reply_problem(reply, request);
  if (!out.problem.empty()) {
    out.code = error_code(ErrorKind::kBadResponse, service);
    out.response = error_response(static_cast<int>(ErrorKind::kBadResponse), service,
                                  "invalid reply: " + out.problem, &request, request_id);
    return out;
  }
  out.response = to_http(std::move(reply), request, request_id);
  return out;
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
