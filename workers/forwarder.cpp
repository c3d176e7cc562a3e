#include "workers/forwarder.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "common/access_log.hpp"
#include "common/errors.hpp"
#include "common/http_headers.hpp"
#include "common/trace_context.hpp"

namespace courier::workers {
namespace {

using std::chrono::microseconds;
using SystemClock = std::chrono::system_clock;

bool is_safe_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == s.npos;
}

// The gateway strips "/{service}", leaving "", "/..." or "?...". Anything else (absolute-form,
// "@host") could retarget the request, and whitespace could split it.
bool is_safe_target(std::string_view s) {
  if (!s.empty() && s.front() != '/' && s.front() != '?') return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

std::string upstream_target(std::string_view base_path, std::string_view target) {
  std::string out(base_path);
  if (out.empty() && (target.empty() || target.front() == '?')) out = "/";
  out += target;
  return out;
}

std::string host_header(const UpstreamUrl& upstream) {
  const bool ipv6 = upstream.host.find(':') != std::string::npos && upstream.host.front() != '[';
  std::string host = ipv6 ? "[" + upstream.host + "]" : upstream.host;
  if (upstream.port != 80) host += ":" + std::to_string(upstream.port);
  return host;
}

// "Connection refused" -> "connection refused": the detail continues a sentence in logs and JSON.
std::string describe(const std::error_code& ec) {
  auto text = ec.message();
  if (!text.empty())
    text.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(text.front())));
  return text;
}

bool is_timeout(const std::error_code& ec) {
  return ec == std::error_code(beast::error_code(beast::error::timeout));
}

}  // namespace

// Holds one request's place in the service's retry budget, and its retry while one is in flight.
class BudgetLease {
 public:
  explicit BudgetLease(RetryBudget& budget) : budget_(budget) { budget_.request_started(); }
  ~BudgetLease() {
    end_retry();
    budget_.request_finished();
  }
  BudgetLease(const BudgetLease&) = delete;
  BudgetLease& operator=(const BudgetLease&) = delete;

  bool begin_retry() { return holds_retry_ = budget_.try_acquire_retry(); }
  void end_retry() {
    if (holds_retry_) budget_.release_retry();
    holds_retry_ = false;
  }

 private:
  RetryBudget& budget_;
  bool holds_retry_ = false;
};

struct Forwarder::Attempt {
  AttemptOutcome outcome = AttemptOutcome::kSuccess;
  FetchResult fetch;
  std::optional<milliseconds> retry_after;
};

bool counts_as_upstream_failure(const FetchResult& fetch,
                                const std::vector<unsigned>& failure_statuses, bool short_budget) {
  if (fetch.outcome != FetchOutcome::kOk) {
    const bool timed_out = fetch.outcome == FetchOutcome::kTimeout ||
                           (fetch.outcome == FetchOutcome::kConnectFailed && is_timeout(fetch.ec));
    return !(timed_out && short_budget);
  }
  const auto status = fetch.response.result_int();
  return std::find(failure_statuses.begin(), failure_statuses.end(), status) !=
         failure_statuses.end();
}

std::optional<UpstreamRequest> build_upstream_request(const RequestEnvelope& request,
                                                      const ServiceConfig& service) {
  if (!is_token(request.method) || !is_safe_target(request.target) ||
      !is_safe_value(request.request_id)) {
    return std::nullopt;
  }
  UpstreamRequest out;
  out.version(11);
  const auto verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) {
    out.method_string(request.method);
  } else {
    out.method(verb);
  }
  out.target(upstream_target(service.upstream.base_path, request.target));

  // end_to_end() also drops Host and Content-Length: set below for this hop and its body.
  for (const auto& h : end_to_end(request.headers)) {
    if (!is_token(h.name) || !is_safe_value(h.value)) return std::nullopt;
    out.insert(h.name, h.value);
  }
  out.set(http::field::host, host_header(service.upstream));
  if (!request.request_id.empty()) out.set("X-Request-ID", request.request_id);

  switch (service.auth_mode) {
    case AuthMode::kForward:
      break;
    case AuthMode::kBearer:
      out.set(http::field::authorization, "Bearer " + service.auth_secret);
      break;
    case AuthMode::kApiKey:
      out.set(service.auth_header, service.auth_secret);
      break;
  }

  out.body() = request.body;
  // Some servers answer 411 to a bodiless POST without Content-Length: 0.
  if (!out.body().empty() || verb == http::verb::post || verb == http::verb::put ||
      verb == http::verb::patch) {
    out.content_length(out.body().size());
  }
  return out;
}

ReplyEnvelope make_upstream_reply(const UpstreamResponse& response) {
  auto reply = make_upstream_head(response);
  reply.body = response.body();
  return reply;
}

ReplyEnvelope make_upstream_head(const UpstreamHead& response) {
  Headers headers;
  for (const auto& field : response) {
    headers.push_back({std::string(field.name_string()), std::string(field.value())});
  }
  ReplyEnvelope reply;
  reply.status = static_cast<std::uint16_t>(response.result_int());
  // end_to_end() drops Content-Length as a per-hop header, but the gateway answers HEAD with the
  // upstream's (a GET's body length), and there is no body here to recompute it from.
  std::optional<Header> length;
  if (const auto* h = find_header(headers, "Content-Length")) length = *h;
  reply.headers = end_to_end(std::move(headers));
  if (length) reply.headers.push_back(std::move(*length));
  return reply;
}

TimePoint request_deadline(std::uint64_t deadline_ms, SystemClock::time_point now,
                           TimePoint steady_now, milliseconds fallback) {
  if (deadline_ms == 0) return steady_now + fallback;
  const auto deadline = SystemClock::time_point{} + milliseconds{deadline_ms};
  return steady_now + std::chrono::duration_cast<Clock::duration>(deadline - now);
}

Forwarder::Forwarder(asio::any_io_executor executor, const ServiceConfig& service,
                     std::string worker_id, std::uint64_t seed)
    : executor_(executor),
      service_(service),
      worker_id_(std::move(worker_id)),
      pool_(executor, service.upstream, service.max_connections),
      policy_{service.max_attempts, service.retry_min_wait, service.retry_max_wait},
      budget_(service.retry_budget_ratio, service.retry_budget_min),
      breaker_(CircuitPolicy{service.circuit_failures, service.circuit_min_requests,
                             service.circuit_failure_rate, service.circuit_window,
                             service.circuit_cooldown, service.circuit_probes},
               [this](const CircuitTransition& t) { log_transition(t); }),
      rng_(seed),
      latency_buckets_(metrics::latency_buckets(service.timeout)) {}

const char* attempt_outcome_label(const FetchResult& fetch) {
  if (fetch.streamed) return "streamed";
  switch (fetch.outcome) {
    case FetchOutcome::kOk:
      return "ok";
    case FetchOutcome::kConnectFailed:
      return "connect_failed";
    case FetchOutcome::kResetBeforeResponse:
      return "reset";
    case FetchOutcome::kTimeout:
      return "timeout";
    case FetchOutcome::kBadResponse:
      return "bad_response";
    case FetchOutcome::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

namespace {

// A stream's end as a label value (to_string's words, as one token).
const char* stream_end_label(FetchResult::StreamEnd end) {
  using E = FetchResult::StreamEnd;
  switch (end) {
    case E::kComplete:
      return "complete";
    case E::kUpstreamFailed:
      return "upstream_failed";
    case E::kIdleTimeout:
      return "idle_timeout";
    case E::kDurationCap:
      return "duration_cap";
    case E::kClientNotReading:
      return "client_not_reading";
    case E::kCancelled:
      return "cancelled";
    case E::kSendFailed:
      return "send_failed";
  }
  return "unknown";
}

}  // namespace

void Forwarder::observe_attempt(const FetchResult& fetch, microseconds took) {
  auto it = stats_.upstream_seconds.find(attempt_outcome_label(fetch));
  if (it == stats_.upstream_seconds.end()) {
    it = stats_.upstream_seconds
             .emplace(attempt_outcome_label(fetch), metrics::HistogramData(latency_buckets_))
             .first;
  }
  it->second.observe(std::chrono::duration<double>(took).count());
}

CircuitStatus Forwarder::circuit_status(TimePoint now) const {
  return {breaker_.state(now),     breaker_.policy().enabled(), breaker_.counts(now),
          breaker_.times_opened(), breaker_.retry_in(now),      breaker_.admits(now)};
}

void Forwarder::log_transition(const CircuitTransition& t) const {
  // Once per change of state, with the evidence: operators must be able to tell a dead upstream
  // from a threshold set too low.
  const auto level = t.to == CircuitState::kOpen ? spdlog::level::warn : spdlog::level::info;
  if (t.from == CircuitState::kOpen) {
    spdlog::log(level, "circuit half-open service={} worker={} probes={}", service_.name,
                worker_id_, breaker_.policy().half_open_probes);
    return;
  }
  const auto over = t.from == CircuitState::kHalfOpen
                        ? std::string("half-open probes")
                        : fmt::format("last {:.1f} s", static_cast<double>(t.span.count()) / 1000);
  spdlog::log(level,
              "circuit {} service={} worker={} failure_rate={:.2f} failures={} attempts={} "
              "over=\"{}\" threshold={:.2f}",
              t.to == CircuitState::kOpen ? "opened" : "closed", service_.name, worker_id_,
              t.evidence.failure_rate(), t.evidence.failures, t.evidence.attempts, over,
              breaker_.policy().failure_rate);
}

asio::awaitable<ReplyEnvelope> Forwarder::forward(RequestEnvelope request) {
  std::optional<ReplyEnvelope> reply;
  co_await run_attempts(request, nullptr, nullptr, reply, nullptr);
  co_return std::move(*reply);  // without a stream, always a reply
}

// Not a coroutine: the caller awaits run_attempts' frame directly, so a request waiting on its
// upstream holds one frame of the forwarder's, not three.
asio::awaitable<void> Forwarder::forward(const RequestEnvelope& request, ReplyStream& stream,
                                         Cancellation& cancel, std::optional<ReplyEnvelope>& reply,
                                         UpstreamMarks* marks) {
  return run_attempts(request, &stream, &cancel, reply, marks);
}

void Forwarder::stamp(ReplyEnvelope& reply, const RequestEnvelope& request, std::uint32_t attempts,
                      microseconds upstream_time) const {
  reply.id = request.id;
  reply.attempts = attempts;
  reply.worker_id = worker_id_;
  reply.upstream_us = static_cast<std::uint64_t>(upstream_time.count());
  reply.headers.push_back({"X-Courier-Attempts", std::to_string(attempts)});
}

void Forwarder::note_cancelled(const RequestEnvelope& request, std::string_view where) {
  ++stats_.cancelled;
  spdlog::info("cancelled by the client request_id={} service={} where={}", request.request_id,
               service_.name, where);
}

ReplyEnvelope Forwarder::cancelled_reply(const RequestEnvelope& request, std::string_view where) {
  note_cancelled(request, where);
  return make_error_reply(ErrorKind::kCancelled, service_.name,
                          "cancelled by the client (" + std::string(where) + ")");
}

void Forwarder::finish(const RequestEnvelope& request, std::optional<ReplyEnvelope>& reply,
                       const Progress& progress, TimePoint started, UpstreamMarks* marks) {
  if (marks) *marks = progress.marks;
  if (!reply) {  // streamed: the HEAD carried the stamped fields
    log_stream(request, progress, started);
    return;
  }
  if (reply->error) ++stats_.error_replies;
  // The forwarder owns every field of the reply it returns, stamped here and nowhere else: what
  // it measured (attempts, upstream time) and whose reply it is (id, worker id).
  stamp(*reply, request, progress.attempts, progress.upstream_time);
  log_access(request, *reply, started);
}

namespace {
// Every permit goes back to the breaker, even if the attempt ends in an exception (a probe that
// never reports would hold the half-open circuit for good).
struct PermitReturn {
  CircuitBreaker& breaker;
  CircuitBreaker::Permit permit;
  bool done = false;
  void operator()(bool failed) {
    if (!done) breaker.record(permit, failed, Clock::now());
    done = true;
  }
  ~PermitReturn() { (*this)(true); }
};
}  // namespace

// g++ gives every local and temporary of a coroutine its own slot in the frame, and a request
// holds that frame for as long as it waits on its upstream. So run_attempts keeps only what lives
// across a wait (the request sent, the last attempt), the reply goes straight into the caller's
// `out`, and the steps between its waits are the plain functions below.
asio::awaitable<void> Forwarder::run_attempts(const RequestEnvelope& request, ReplyStream* stream,
                                              Cancellation* cancel,
                                              std::optional<ReplyEnvelope>& out,
                                              UpstreamMarks* marks) {
  ++stats_.requests;
  const auto started = Clock::now();
  const auto deadline =
      request_deadline(request.deadline_ms, SystemClock::now(), started, service_.timeout);
  Progress progress;
  const auto upstream_request = build_upstream_request(request, service_);
  // The reply once decided; stays empty when the response was streamed.
  out = refuse_early(request, upstream_request.has_value(), cancel);
  if (out) {
    finish(request, out, progress, started, marks);
    co_return;
  }
  BudgetLease lease(budget_);
  // Decided from the request it sends, not from the frame's flag (which the worker checked
  // against the request before it got here): the same function the gateway's flag comes from.
  const bool retry_safe = is_retry_safe(request.method, request.headers);

  // Set per attempt below: the HEAD carries that attempt's number and the time to its head.
  TimePoint attempt_start{};
  std::optional<StreamOptions> streaming;
  if (stream) {
    streaming.emplace();
    streaming->sink = stream;
    streaming->threshold = service_.stream_threshold;
    // Their bodies are small, and a chunked 503 must still be retried like any other.
    streaming->read_whole = [](unsigned status) {
      return classify_status(status) == AttemptOutcome::kRetryableStatus;
    };
    streaming->idle_timeout = service_.stream_idle_timeout;
    streaming->max_duration = service_.stream_max_duration;
    streaming->on_head = [&](const UpstreamHead& head) {
      auto envelope = make_upstream_head(head);
      const auto took = std::chrono::duration_cast<microseconds>(Clock::now() - attempt_start);
      stamp(envelope, request, progress.attempts + 1, progress.upstream_time + took);
      stream->head(envelope);
    };
  }
  const FetchOptions fetch_options{streaming ? &*streaming : nullptr, cancel};

  std::optional<Attempt> last;
  for (;;) {
    const auto now = Clock::now();
    std::optional<CircuitBreaker::Permit> permit;
    if (now < deadline) permit = breaker_.allow(now);
    if (!permit) {
      out = no_attempt(now, deadline, last);
      break;
    }
    PermitReturn give_back{breaker_, *permit};
    const auto attempt_deadline = std::min(now + service_.timeout, deadline);
    // A client that asks for a short deadline (X-Request-Timeout) must not be able to open the
    // circuit for everyone: its timeouts count only if the attempt had half the service timeout.
    const bool short_budget = (attempt_deadline - now) * 2 < service_.timeout;
    attempt_start = now;
    const auto next = after_fetch(
        request, co_await pool_.fetch(*upstream_request, attempt_deadline, fetch_options),
        std::chrono::duration_cast<microseconds>(Clock::now() - now),
        {retry_safe, short_budget, deadline}, progress, lease, last, out);
    give_back(next.failed);
    if (!next.retry) break;  // `out` holds the reply, or the response was streamed
    co_await back_off(next.wait, cancel);
    if (cancel && cancel->cancelled()) {
      out = cancelled_reply(request, "backoff");
      break;
    }
  }
  finish(request, out, progress, started, marks);
}

asio::awaitable<void> Forwarder::back_off(std::chrono::milliseconds wait, Cancellation* cancel) {
  asio::steady_timer timer(executor_, wait);
  Cancellation::Scope scope(cancel, [&] { timer.cancel(); });
  beast::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

std::optional<ReplyEnvelope> Forwarder::refuse_early(const RequestEnvelope& request,
                                                     bool can_forward, Cancellation* cancel) {
  if (!can_forward) {
    return make_error_reply(ErrorKind::kBadRequest, service_.name,
                            "method, target or a header cannot be forwarded");
  }
  if (cancel && cancel->cancelled()) return cancelled_reply(request, "queued");
  return std::nullopt;
}

ReplyEnvelope Forwarder::no_attempt(TimePoint now, TimePoint deadline,
                                    std::optional<Attempt>& last) {
  if (now >= deadline) {
    if (last) return final_reply(std::move(*last), deadline);
    return make_error_reply(ErrorKind::kTimeout, service_.name,
                            "deadline passed before the request was sent");
  }
  ++stats_.circuit_rejections;
  if (last) return final_reply(std::move(*last), deadline);
  auto reply = make_error_reply(ErrorKind::kUnavailable, service_.name, "circuit open");
  const auto wait = std::chrono::ceil<std::chrono::seconds>(breaker_.retry_in(now));
  reply.headers.push_back({"Retry-After", std::to_string(std::max<long long>(wait.count(), 1))});
  return reply;
}

Forwarder::Next Forwarder::after_fetch(const RequestEnvelope& request, FetchResult fetched,
                                       microseconds took, AttemptTerms terms, Progress& progress,
                                       BudgetLease& lease, std::optional<Attempt>& last,
                                       std::optional<ReplyEnvelope>& out) {
  progress.upstream_time += took;
  progress.marks = {fetched.sent_us, fetched.head_us};
  ++progress.attempts;
  ++stats_.attempts;
  observe_attempt(fetched, took);
  lease.end_retry();

  if (fetched.outcome == FetchOutcome::kCancelled) {
    // Says nothing about the upstream: the client left.
    out = cancelled_reply(request, "upstream");
    return {};
  }
  if (fetched.streamed) {
    // Whatever happened after the head, never again: the client may be reading it already.
    using StreamEnd = FetchResult::StreamEnd;
    ++stats_.streams;
    const auto end = fetched.stream_end;
    if (end != StreamEnd::kComplete) {
      ++stats_.stream_aborts;
      ++stats_.stream_aborts_by_reason[stream_end_label(end)];
    }
    const bool failed =
        end == StreamEnd::kUpstreamFailed || end == StreamEnd::kIdleTimeout ||
        counts_as_upstream_failure(fetched, service_.circuit_failure_statuses, terms.short_budget);
    stats_.circuit_failures += failed;
    // Its access record (log_stream) tells how it ended.
    if (end == StreamEnd::kCancelled) note_cancelled(request, "streaming");
    progress.stream_status = fetched.response.result_int();
    progress.stream_bytes = fetched.streamed_bytes;
    progress.stream_end = end;
    return {.failed = failed};
  }

  Attempt attempt = classify(std::move(fetched), SystemClock::now());
  const bool failed = counts_as_upstream_failure(attempt.fetch, service_.circuit_failure_statuses,
                                                 terms.short_budget);
  stats_.circuit_failures += failed;
  const int attempts = static_cast<int>(progress.attempts);
  log_attempt(request, attempt, attempts, took);

  const auto decision =
      decide_retry(policy_, {attempt.outcome, attempts, terms.retry_safe, attempt.retry_after},
                   Clock::now(), terms.deadline, rng_);
  if (!decision.retry) {
    if (attempt.fetch.outcome == FetchOutcome::kResetBeforeResponse && attempt.fetch.request_sent &&
        !terms.retry_safe) {
      ++stats_.lost_after_sending;
      spdlog::warn(
          "upstream connection lost after sending request_id={} service={} method={}: not "
          "retry-safe, not sent again",
          request.request_id, service_.name, request.method);
    }
    out = final_reply(std::move(attempt), terms.deadline);
    return {.failed = failed};
  }
  if (!lease.begin_retry()) {
    ++stats_.budget_rejections;
    out = final_reply(std::move(attempt), terms.deadline);
    return {.failed = failed};
  }
  ++stats_.retries;
  last = std::move(attempt);
  return {.failed = failed, .retry = true, .wait = decision.wait};
}

Forwarder::Attempt Forwarder::classify(FetchResult result, SystemClock::time_point now) const {
  Attempt attempt;
  switch (result.outcome) {
    case FetchOutcome::kOk:
      attempt.outcome = classify_status(result.response.result_int());
      if (attempt.outcome == AttemptOutcome::kRetryableStatus) {
        attempt.retry_after = parse_retry_after(result.response[http::field::retry_after], now);
      }
      break;
    case FetchOutcome::kConnectFailed:
      attempt.outcome = AttemptOutcome::kConnectFailed;
      break;
    case FetchOutcome::kResetBeforeResponse:
      // Nothing of the request went out: as safe to repeat as a failed connect.
      attempt.outcome = result.request_sent ? AttemptOutcome::kResetBeforeResponse
                                            : AttemptOutcome::kConnectFailed;
      break;
    case FetchOutcome::kTimeout:
      attempt.outcome = AttemptOutcome::kTimeout;
      break;
    case FetchOutcome::kBadResponse:
    case FetchOutcome::kCancelled:  // never retried: run_attempts answers it before classifying
      attempt.outcome = AttemptOutcome::kBadResponse;
      break;
  }
  attempt.fetch = std::move(result);
  return attempt;
}

ReplyEnvelope Forwarder::final_reply(Attempt attempt, TimePoint deadline) const {
  const auto& ec = attempt.fetch.ec;
  switch (attempt.fetch.outcome) {
    case FetchOutcome::kOk:
      return make_upstream_reply(attempt.fetch.response);
    case FetchOutcome::kConnectFailed:
      // Out of time is a timeout whatever the phase; otherwise the upstream is out of reach.
      if (Clock::now() >= deadline) {
        return make_error_reply(ErrorKind::kTimeout, service_.name, "connect: " + describe(ec));
      }
      return make_error_reply(ErrorKind::kUnavailable, service_.name,
                              is_timeout(ec) ? "connect timed out" : describe(ec));
    case FetchOutcome::kResetBeforeResponse:
      if (!attempt.fetch.request_sent) {
        return make_error_reply(ErrorKind::kUnavailable, service_.name,
                                "connection closed before the request was sent: " + describe(ec));
      }
      // The upstream may have acted on the request: the client must know it was not refused.
      return make_error_reply(ErrorKind::kBadResponse, service_.name,
                              "connection lost after sending: " + describe(ec));
    case FetchOutcome::kTimeout:
      return make_error_reply(ErrorKind::kTimeout, service_.name, "no response in time");
    case FetchOutcome::kBadResponse:
      return make_error_reply(ErrorKind::kBadResponse, service_.name, describe(ec));
    case FetchOutcome::kCancelled:
      return make_error_reply(ErrorKind::kCancelled, service_.name, "cancelled by the client");
  }
  return make_error_reply(ErrorKind::kBadResponse, service_.name, "unknown outcome");
}

namespace {

access::Record access_record(const RequestEnvelope& request, std::string_view service,
                             std::string_view worker, TimePoint started) {
  access::Record r;
  r.time = SystemClock::now();
  r.component = "worker";
  r.request_id = request.request_id;
  for (const auto& h : request.headers) {
    if (iequals(h.name, "traceparent")) r.trace_id = trace::trace_id_of(h.value);
  }
  r.service = std::string(service);
  r.method = request.method;
  r.path = access::loggable_path(request.target, access::options().log_query);
  r.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  r.worker = std::string(worker);
  r.bytes_in = request.body.size();
  return r;
}

}  // namespace

void Forwarder::log_access(const RequestEnvelope& request, const ReplyEnvelope& reply,
                           TimePoint started) const {
  if (!access::options().enabled) return;
  auto r = access_record(request, service_.name, worker_id_, started);
  r.status = reply.status;
  if (reply.error) r.code = reply.error->code;
  r.attempts = reply.attempts;
  if (reply.attempts > 0) r.upstream_ms = static_cast<double>(reply.upstream_us) / 1000.0;
  r.bytes_out = reply.body.size();
  access::write(r);
}

void Forwarder::log_stream(const RequestEnvelope& request, const Progress& progress,
                           TimePoint started) const {
  if (!access::options().enabled) return;
  using StreamEnd = FetchResult::StreamEnd;
  auto r = access_record(request, service_.name, worker_id_, started);
  const auto end = progress.stream_end.value_or(StreamEnd::kComplete);
  r.status = end == StreamEnd::kCancelled ? 499 : progress.stream_status;
  if (end == StreamEnd::kCancelled) r.code = error_code(ErrorKind::kCancelled, "");
  r.attempts = progress.attempts;
  r.upstream_ms = static_cast<double>(progress.upstream_time.count()) / 1000.0;
  r.bytes_out = progress.stream_bytes;
  r.stream = end == StreamEnd::kComplete    ? "complete"
             : end == StreamEnd::kCancelled ? "cancelled"
                                            : "truncated";
  if (end != StreamEnd::kComplete && end != StreamEnd::kCancelled) r.reason = to_string(end);
  access::write(r);
}

void Forwarder::log_attempt(const RequestEnvelope& request, const Attempt& attempt, int number,
                            microseconds took) const {
  // The query string stays out of logs (values, unless logging.log_query): clients put tokens
  // there.
  const auto path = access::loggable_path(request.target, access::options().log_query);
  const auto result =
      attempt.fetch.outcome == FetchOutcome::kOk
          ? std::to_string(attempt.fetch.response.result_int())
          : std::string(to_string(attempt.fetch.outcome)) + ": " + describe(attempt.fetch.ec);
  spdlog::info(
      "upstream request_id={} service={} method={} path={} result=\"{}\" attempt={} "
      "upstream_ms={:.1f}",
      request.request_id, service_.name, request.method, path, result, number,
      static_cast<double>(took.count()) / 1000.0);
}

}  // namespace courier::workers
