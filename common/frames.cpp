#include "common/frames.hpp"

#include <cstring>

#include "common/http_headers.hpp"

namespace courier::protocol {
namespace {

class FrameCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "courier.frame"; }
  std::string message(int ev) const override {
    switch (static_cast<FrameError>(ev)) {
      case FrameError::kTooFewFrames:
        return "too few frames";
      case FrameError::kTooManyFrames:
        return "too many frames";
      case FrameError::kBadTag:
        return "not a Courier protocol message (bad tag or version)";
      case FrameError::kUnknownCommand:
        return "unknown command";
      case FrameError::kBadField:
        return "malformed field";
    }
    return "unknown frame error";
  }
};

zmq::message_t str_frame(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

std::error_code expect_count(const Frames& frames, std::size_t offset, std::size_t n) {
  if (frames.size() < offset + n) return FrameError::kTooFewFrames;
  if (frames.size() > offset + n) return FrameError::kTooManyFrames;
  return {};
}

}  // namespace

const std::error_category& frame_category() {
  static const FrameCategory category;
  return category;
}

std::error_code make_error_code(FrameError e) { return {static_cast<int>(e), frame_category()}; }

bool valid_service_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxServiceNameSize) return false;
  if (name.front() < 'a' || name.front() > 'z') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::uint64_t read_u64(const zmq::message_t& frame) {
  const auto* p = static_cast<const std::uint8_t*>(frame.data());
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

std::uint32_t read_u32(const zmq::message_t& frame) {
  const auto* p = static_cast<const std::uint8_t*>(frame.data());
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

zmq::message_t u64_frame(std::uint64_t value) {
  std::uint8_t buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<std::uint8_t>(value & 0xff);
    value >>= 8;
  }
  return zmq::message_t(buf, sizeof buf);
}

zmq::message_t u32_frame(std::uint32_t value) {
  std::uint8_t buf[4] = {static_cast<std::uint8_t>(value >> 24),
                         static_cast<std::uint8_t>(value >> 16),
                         static_cast<std::uint8_t>(value >> 8), static_cast<std::uint8_t>(value)};
  return zmq::message_t(buf, sizeof buf);
}

CorrelationId read_id(const zmq::message_t& frame) {
  CorrelationId id{};
  std::memcpy(id.data(), frame.data(), id.size());
  return id;
}

zmq::message_t id_frame(const CorrelationId& id) { return zmq::message_t(id.data(), id.size()); }

std::error_code parse_command(const Frames& frames, std::size_t offset, Command& out) {
  if (frames.size() < offset + 2) return FrameError::kTooFewFrames;
  if (view(frames[offset]) != kTag) return FrameError::kBadTag;
  const auto& cmd = frames[offset + 1];
  if (cmd.size() != 1) return FrameError::kUnknownCommand;
  const auto c = *static_cast<const std::uint8_t*>(cmd.data());
  if (c < static_cast<std::uint8_t>(Command::kRequest) ||
      c > static_cast<std::uint8_t>(Command::kCancel)) {
    return FrameError::kUnknownCommand;
  }
  out = static_cast<Command>(c);
  return {};
}

// A message of `n` frames after `offset`, or of n + 1 whose last is a STAMPS frame.
static std::error_code expect_count_stamped(const Frames& frames, std::size_t offset,
                                            std::size_t n) {
  if (frames.size() == offset + n + 1) {
    return frames.back().size() == kStampsFrameSize ? std::error_code{} : FrameError::kBadField;
  }
  return expect_count(frames, offset, n);
}

std::error_code parse_request(const Frames& frames, std::size_t offset, RequestHeader& out) {
  if (auto ec = expect_count_stamped(frames, offset, kRequestFrames)) return ec;
  const auto& service = frames[offset + 2];
  const auto& id = frames[offset + 3];
  const auto& deadline = frames[offset + 4];
  const auto& flags = frames[offset + 5];
  if (!valid_service_name(view(service)) || id.size() != kCorrelationIdSize ||
      deadline.size() != 8 || flags.size() != 1) {
    return FrameError::kBadField;
  }
  out.service = view(service);
  out.id = read_id(id);
  out.deadline_ms = read_u64(deadline);
  out.flags = *static_cast<const std::uint8_t*>(flags.data());
  if (frames.size() == offset + kRequestFrames + 1) {
    out.stamps = read_stamps(frames[offset + kRequestStampsIndex]);
  } else {
    out.stamps.reset();
  }
  return {};
}

std::error_code parse_reply(const Frames& frames, std::size_t offset, CorrelationId& out) {
  if (auto ec = expect_count_stamped(frames, offset, kReplyFrames)) return ec;
  if (frames[offset + 2].size() != kCorrelationIdSize) return FrameError::kBadField;
  out = read_id(frames[offset + 2]);
  return {};
}

std::error_code parse_ready(const Frames& frames, std::size_t offset, ReadyHeader& out) {
  if (auto ec = expect_count(frames, offset, 5)) return ec;
  const auto& service = frames[offset + 2];
  const auto& capacity = frames[offset + 3];
  const auto& worker = frames[offset + 4];
  if (!valid_service_name(view(service)) || capacity.size() != 4 ||
      worker.size() > kMaxWorkerIdSize) {
    return FrameError::kBadField;
  }
  const std::uint32_t cap = read_u32(capacity);
  if (cap == 0 || cap > 1'000'000) return FrameError::kBadField;
  out.service = view(service);
  out.capacity = cap;
  out.worker_id = view(worker);
  return {};
}

std::error_code parse_stats(const Frames& frames, std::size_t offset, CorrelationId& out) {
  if (frames.size() < offset + 3) return FrameError::kTooFewFrames;
  if (frames.size() > offset + 4) return FrameError::kTooManyFrames;
  if (frames[offset + 2].size() != kCorrelationIdSize) return FrameError::kBadField;
  out = read_id(frames[offset + 2]);
  return {};
}

std::error_code parse_stream(const Frames& frames, std::size_t offset, StreamHeader& out) {
  if (auto ec = expect_count(frames, offset, kStreamFrames)) return ec;
  const auto& id = frames[offset + 2];
  const auto& part = frames[offset + 3];
  const auto& until = frames[offset + 4];
  if (id.size() != kCorrelationIdSize || part.size() != 1 || until.size() != 8) {
    return FrameError::kBadField;
  }
  const auto p = *static_cast<const std::uint8_t*>(part.data());
  if (p < static_cast<std::uint8_t>(StreamPart::kHead) ||
      p > static_cast<std::uint8_t>(StreamPart::kAbort)) {
    return FrameError::kBadField;
  }
  if (static_cast<StreamPart>(p) == StreamPart::kAbort &&
      frames[offset + kStreamPayloadIndex].size() > kMaxAbortReason) {
    return FrameError::kBadField;
  }
  out.id = read_id(id);
  out.part = static_cast<StreamPart>(p);
  out.until_ms = read_u64(until);
  return {};
}

std::error_code parse_credit(const Frames& frames, std::size_t offset, CorrelationId& id,
                             std::uint32_t& bytes) {
  if (auto ec = expect_count(frames, offset, kCreditFrames)) return ec;
  if (frames[offset + 2].size() != kCorrelationIdSize || frames[offset + 3].size() != 4) {
    return FrameError::kBadField;
  }
  const auto n = read_u32(frames[offset + 3]);
  if (n == 0 || n > kMaxCredit) return FrameError::kBadField;
  id = read_id(frames[offset + 2]);
  bytes = n;
  return {};
}

std::error_code parse_cancel(const Frames& frames, std::size_t offset, CorrelationId& id) {
  if (auto ec = expect_count(frames, offset, kCancelFrames)) return ec;
  if (frames[offset + 2].size() != kCorrelationIdSize) return FrameError::kBadField;
  id = read_id(frames[offset + 2]);
  return {};
}

std::uint8_t request_flags(const RequestEnvelope& request) {
  return is_retry_safe(request.method, request.headers) ? kFlagRetrySafe : 0;
}

RequestHeader request_header(const RequestEnvelope& request) {
  RequestHeader header;
  header.service = request.service;
  header.id = request.id;
  header.deadline_ms = request.deadline_ms;
  header.flags = request_flags(request);
  return header;
}

std::string_view request_mismatch(const RequestHeader& header, const RequestEnvelope& request) {
  if (header.id != request.id) return "envelope id does not match its frame";
  // Reserved bits are ignored; only a retry-safe claim the request does not back is refused.
  if ((header.flags & kFlagRetrySafe) && !(request_flags(request) & kFlagRetrySafe)) {
    return "retry-safe flag not warranted by the request";
  }
  return {};
}

void add_header(Frames& out, Command command) {
  out.push_back(str_frame(kTag));
  const auto c = static_cast<std::uint8_t>(command);
  out.emplace_back(&c, 1);
}

void add_request(Frames& out, const RequestHeader& header, zmq::message_t envelope) {
  add_header(out, Command::kRequest);
  out.push_back(str_frame(header.service));
  out.push_back(id_frame(header.id));
  out.push_back(u64_frame(header.deadline_ms));
  out.emplace_back(&header.flags, 1);
  out.push_back(std::move(envelope));
  if (header.stamps) out.push_back(stamps_frame(*header.stamps));
}

void add_reply(Frames& out, const CorrelationId& id, zmq::message_t envelope,
               const Stamps* stamps) {
  add_header(out, Command::kReply);
  out.push_back(id_frame(id));
  out.push_back(std::move(envelope));
  if (stamps) out.push_back(stamps_frame(*stamps));
}

void add_ready(Frames& out, std::string_view service, std::uint32_t capacity,
               std::string_view worker_id) {
  add_header(out, Command::kReady);
  out.push_back(str_frame(service));
  out.push_back(u32_frame(capacity));
  out.push_back(str_frame(worker_id));
}

void add_stream(Frames& out, const StreamHeader& header, zmq::message_t payload) {
  add_header(out, Command::kStream);
  out.push_back(id_frame(header.id));
  const auto part = static_cast<std::uint8_t>(header.part);
  out.emplace_back(&part, 1);
  out.push_back(u64_frame(header.until_ms));
  out.push_back(std::move(payload));
}

void add_credit(Frames& out, const CorrelationId& id, std::uint32_t bytes) {
  add_header(out, Command::kCredit);
  out.push_back(id_frame(id));
  out.push_back(u32_frame(bytes));
}

void add_cancel(Frames& out, const CorrelationId& id) {
  add_header(out, Command::kCancel);
  out.push_back(id_frame(id));
}

}  // namespace courier::protocol
