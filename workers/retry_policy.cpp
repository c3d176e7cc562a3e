#include "workers/retry_policy.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>

namespace courier::workers {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

template <class T>
bool parse_number(std::string_view text, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

// IMF-fixdate, the only HTTP-date form senders may generate: "Sun, 06 Nov 1994 08:49:37 GMT".
std::optional<std::chrono::system_clock::time_point> parse_imf_fixdate(std::string_view s) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (s.size() != 29 || s.substr(3, 2) != ", " || s.substr(25) != " GMT" || s[7] != ' ' ||
      s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':') {
    return std::nullopt;
  }
  const auto month = std::find(kMonths.begin(), kMonths.end(), s.substr(8, 3));
  unsigned day = 0, hour = 0, minute = 0, second = 0;
  int year = 0;
  if (month == kMonths.end() || !parse_number(s.substr(5, 2), day) ||
      !parse_number(s.substr(12, 4), year) || !parse_number(s.substr(17, 2), hour) ||
      !parse_number(s.substr(20, 2), minute) || !parse_number(s.substr(23, 2), second)) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day date{std::chrono::year{year},
                            std::chrono::month{unsigned(month - kMonths.begin()) + 1},
                            std::chrono::day{day}};
  if (!date.ok() || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  return sys_days{date} + hours{hour} + minutes{minute} + seconds{second};
}

}  // namespace

const char* to_string(AttemptOutcome outcome) {
  switch (outcome) {
    case AttemptOutcome::kSuccess:
      return "success";
    case AttemptOutcome::kConnectFailed:
      return "connect failed";
    case AttemptOutcome::kResetBeforeResponse:
      return "reset before response";
    case AttemptOutcome::kTimeout:
      return "timeout";
    case AttemptOutcome::kRetryableStatus:
      return "retryable status";
    case AttemptOutcome::kOtherStatus:
      return "final status";
    case AttemptOutcome::kBadResponse:
      return "bad response";
  }
  return "unknown";
}

AttemptOutcome classify_status(unsigned status) {
  return status == 429 || status == 502 || status == 503 || status == 504
             ? AttemptOutcome::kRetryableStatus
             : AttemptOutcome::kOtherStatus;
}

RetryDecision decide_retry(const RetryPolicy& policy, const FinishedAttempt& attempt, TimePoint now,
                           TimePoint deadline, std::mt19937_64& rng) {
  switch (attempt.outcome) {
    case AttemptOutcome::kSuccess:
    case AttemptOutcome::kOtherStatus:
    case AttemptOutcome::kBadResponse:
      return {false, {}, "outcome is final"};
    case AttemptOutcome::kConnectFailed:
      break;
    case AttemptOutcome::kResetBeforeResponse:
    case AttemptOutcome::kTimeout:
    case AttemptOutcome::kRetryableStatus:
      // The upstream may have acted on the request already; repeating it must be harmless.
      if (!attempt.retry_safe) return {false, {}, "request is not retry-safe"};
      break;
  }
  if (attempt.attempts_made >= policy.max_attempts) return {false, {}, "attempts exhausted"};

  milliseconds wait = backoff_wait(policy, attempt.attempts_made, rng);
  if (attempt.retry_after) {
    // Coming back before the upstream asked to is likely to fail again.
    if (*attempt.retry_after > std::max(policy.max_wait, policy.min_wait)) {
      return {false, {}, "retry-after beyond max wait"};
    }
    if (now + *attempt.retry_after >= deadline) return {false, {}, "retry-after beyond deadline"};
    wait = std::max(*attempt.retry_after, wait);
  }
  if (now + wait >= deadline) return {false, {}, "no time left before deadline"};
  return {true, wait, to_string(attempt.outcome)};
}

milliseconds backoff_wait(const RetryPolicy& policy, int attempts_made, std::mt19937_64& rng) {
  const auto min_wait = std::max(policy.min_wait, milliseconds{0});
  const auto max_wait = std::max(policy.max_wait, min_wait);
  // Doubling beyond 2^30 only matters for overflow, never for the capped result.
  const int doublings = std::clamp(attempts_made - 1, 0, 30);
  const auto ceiling = std::min<std::int64_t>(max_wait.count(), min_wait.count() << doublings);
  std::uniform_int_distribution<std::int64_t> jitter(0, ceiling - min_wait.count());
  return min_wait + milliseconds{jitter(rng)};
}

std::optional<milliseconds> parse_retry_after(std::string_view value,
                                              std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    std::uint32_t seconds = 0;  // a day is plenty; larger values fail to parse and are ignored
    if (!parse_number(value, seconds) || seconds > 86'400) return std::nullopt;
    return std::chrono::seconds{seconds};
  }
  const auto date = parse_imf_fixdate(value);
  if (!date) return std::nullopt;
  return std::max(std::chrono::duration_cast<milliseconds>(*date - now), milliseconds{0});
}

RetryBudget::RetryBudget(double ratio, int min_retries)
    : ratio_(std::max(ratio, 0.0)), min_retries_(std::max(min_retries, 0)) {}

void RetryBudget::request_finished() {
  if (active_requests_ > 0) --active_requests_;
}

bool RetryBudget::try_acquire_retry() {
  const int allowed =
      std::max(min_retries_, static_cast<int>(std::floor(ratio_ * active_requests_)));
  if (retries_in_flight_ >= allowed) return false;
  ++retries_in_flight_;
  return true;
}

void RetryBudget::release_retry() {
  if (retries_in_flight_ > 0) --retries_in_flight_;
}

}  // namespace courier::workers
