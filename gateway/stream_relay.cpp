#include "gateway/stream_relay.hpp"

#include <algorithm>

#include "common/errors.hpp"
#include "common/http_headers.hpp"
#include "common/protocol.hpp"

namespace courier::gateway {

namespace {

bool is_decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits always fit in 64 bits
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_event_stream(std::string_view content_type) {
  const auto end = content_type.find(';');
  auto media = content_type.substr(0, end);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  return iequals(media, "text/event-stream");
}

}  // namespace

StreamHead stream_head(ReplyEnvelope&& head, const HttpRequest& request, std::string_view service,
                       std::string_view request_id) {
  StreamHead out;
  out.attempts = head.attempts;
  out.worker = head.worker_id;
  out.upstream_us = head.upstream_us;
  out.problem = reply_problem(head, request);
  std::string length;
  for (const auto& h : head.headers) {
    if (iequals(h.name, "content-length")) length = h.value;
    if (iequals(h.name, "content-type")) out.event_stream = is_event_stream(h.value);
  }
  if (out.problem.empty()) {
    if (request.method() == http::verb::head) {
      out.problem = "a streamed reply to a HEAD request";
    } else if (head.status == 204 || head.status == 304) {
      out.problem = "a streamed reply with status " + std::to_string(head.status);
    } else if (!length.empty() && !is_decimal(length)) {
      out.problem = "Content-Length is not a decimal number";
    }
  }
  if (!out.problem.empty()) {
    out.response = error_response(static_cast<int>(ErrorKind::kBadResponse), service,
                                  "invalid stream head: " + out.problem, &request, request_id);
    return out;
  }
  head.body.clear();
  out.response = to_http(std::move(head), request, request_id);
  out.response.erase(http::field::content_length);
  if (!length.empty()) {
    out.framing = StreamFraming::kLength;
    out.length = std::stoull(length);
    out.response.content_length(out.length);
  } else if (request.version() >= 11) {
    out.framing = StreamFraming::kChunked;
    out.response.chunked(true);
  } else {
    out.framing = StreamFraming::kClose;
    out.response.keep_alive(false);
  }
  // An NGINX in front would otherwise buffer the events this relay does not.
  if (out.event_stream) out.response.set("X-Accel-Buffering", "no");
  return out;
}

std::string chunk_header(std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  char digits[2 * sizeof(std::size_t)];
  std::size_t n = 0;
  do {
    digits[n++] = kHex[size & 0xf];
    size >>= 4;
  } while (size != 0);
  std::string out(digits, n);
  std::reverse(out.begin(), out.end());
  out += "\r\n";
  return out;
}

void EventBoundary::wrote(std::string_view bytes) {
  for (char c : bytes.substr(bytes.size() > 4 ? bytes.size() - 4 : 0)) {
    if (size_ == 4) {
      std::copy(tail_ + 1, tail_ + 4, tail_);
      --size_;
    }
    tail_[size_++] = c;
  }
}

bool EventBoundary::at_boundary() const {
  const std::string_view tail(tail_, size_);
  return tail.empty() || tail.ends_with("\n\n") || tail.ends_with("\r\n\r\n");
}

bool keepalive_due(const StreamHead& head, std::chrono::milliseconds interval,
                   std::chrono::steady_clock::duration idle, bool at_boundary) {
  return head.event_stream && head.framing != StreamFraming::kLength &&
         interval > std::chrono::milliseconds::zero() && idle >= interval && at_boundary;
}

bool StreamWindow::receive(std::size_t bytes) {
  received_ += bytes;
  return received_ <= granted_;
}

std::uint32_t credit_due(std::uint64_t uncredited, std::size_t batch, bool nothing_queued) {
  if (uncredited == 0 || (uncredited < batch && !nothing_queued)) return 0;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(uncredited, protocol::kMaxCredit));
}

std::string sanitize_reason(std::string_view reason) {
  reason = reason.substr(0, protocol::kMaxAbortReason);
  std::string out;
  out.reserve(reason.size());
  for (char c : reason) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      out += '?';
    }
  }
  return out;
}

}  // namespace courier::gateway
