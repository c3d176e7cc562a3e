// Where a streamed reply goes (HEAD, DATA..., then END or ABORT) and the credit that bounds the
// body bytes in flight (docs/protocol.md, "Streams"). The worker sends the parts as STREAM frames;
// tests record them.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/asio.hpp"
#include "common/envelope.hpp"
#include "common/protocol.hpp"

namespace courier::workers {

// The most body bytes a stream may be credited ahead: the largest stream_window a gateway may be
// configured with. A gateway never grants more than its window, so CREDIT beyond it is a bug or
// hostile, and honouring it would let one stream read the upstream far ahead of its client.
inline constexpr std::uint64_t kMaxStreamCredit = std::uint64_t{64} << 20;

// The ABORT reason after a part could not be sent: the gateway has a hole in the stream.
inline constexpr std::string_view kSendFailedReason = "worker could not send part of the stream";

// Not thread-safe: every call comes from the executor given to the constructor. The sender keeps
// the order (HEAD first, one END or ABORT last) and never sends more body bytes than credit().
// A part the sink could not send breaks the stream: a gap must never be followed by more parts
// (an END would make a truncated body look whole), so only one best-effort ABORT
// (kSendFailedReason) follows it and every later call does nothing.
class ReplyStream {
 public:
  explicit ReplyStream(asio::any_io_executor executor) : executor_(std::move(executor)) {}
  virtual ~ReplyStream() = default;
  ReplyStream(const ReplyStream&) = delete;
  ReplyStream& operator=(const ReplyStream&) = delete;

  void head(const ReplyEnvelope& head);
  // Each consumes credit for its bytes.
  void data(std::string_view bytes);
  void end(std::string_view last_bytes);
  // Cut to protocol::kMaxAbortReason bytes.
  void abort(std::string_view reason);

  bool started() const { return started_; }    // the HEAD went out
  bool finished() const { return finished_; }  // END or ABORT went out
  bool broken() const { return broken_; }      // a part could not be sent (then finished() too)

  // Body bytes that may be sent now.
  std::uint64_t credit() const { return credit_; }
  // A CREDIT from the gateway: more bytes may be sent, in all at most kMaxStreamCredit. False if
  // (part of) it was ignored for that cap.
  bool add_credit(std::uint32_t bytes);
  // Returns when credit arrives, wake() is called, or `deadline` passes, whichever comes first.
  asio::awaitable<void> wait_for_credit(std::chrono::steady_clock::time_point deadline);
  // Ends a wait_for_credit() early (cancellation).
  void wake();

 protected:
  // False if the part was not sent (e.g. the link's send queue is full).
  virtual bool send(protocol::StreamPart part, std::string_view payload) = 0;
  // The HEAD's payload is an envelope: a sink that frames it may want the structured value.
  virtual bool send_head(const ReplyEnvelope& head) = 0;
  // Once, after the first part that could not be sent: the sink stops whatever feeds the stream
  // (the worker cancels the request, which closes the upstream connection).
  virtual void on_send_failed() {}

 private:
  void consume(std::size_t bytes);
  // Sends a part unless the stream is broken; on the first failure breaks it.
  void deliver(protocol::StreamPart part, std::string_view payload);
  void broke();

  asio::any_io_executor executor_;
  // Made on the first wait: most replies are never streamed, and those that are rarely wait.
  std::optional<asio::steady_timer> timer_;
  std::uint64_t credit_ = protocol::kInitialStreamWindow;
  bool started_ = false;
  bool finished_ = false;
  bool broken_ = false;
};

}  // namespace courier::workers
