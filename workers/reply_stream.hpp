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

// Not thread-safe: every call comes from the executor given to the constructor. The sender keeps
// the order (HEAD first, one END or ABORT last) and never sends more body bytes than credit().
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

  // Body bytes that may be sent now.
  std::uint64_t credit() const { return credit_; }
  // A CREDIT from the gateway: more bytes may be sent (in all at most protocol::kMaxCredit).
  void add_credit(std::uint32_t bytes);
  // Returns when credit arrives, wake() is called, or `deadline` passes, whichever comes first.
  asio::awaitable<void> wait_for_credit(std::chrono::steady_clock::time_point deadline);
  // Ends a wait_for_credit() early (cancellation).
  void wake();

 protected:
  virtual void send(protocol::StreamPart part, std::string_view payload) = 0;
  // The HEAD's payload is an envelope: a sink that frames it may want the structured value.
  virtual void send_head(const ReplyEnvelope& head) = 0;

 private:
  void consume(std::size_t bytes);

  asio::any_io_executor executor_;
  // Made on the first wait: most replies are never streamed, and those that are rarely wait.
  std::optional<asio::steady_timer> timer_;
  std::uint64_t credit_ = protocol::kInitialStreamWindow;
  bool started_ = false;
  bool finished_ = false;
};

}  // namespace courier::workers
