#include "workers/reply_stream.hpp"

#include <algorithm>

namespace courier::workers {

void ReplyStream::head(const ReplyEnvelope& head) {
  started_ = true;
  if (!send_head(head)) broke();
}

void ReplyStream::broke() {
  broken_ = true;
  finished_ = true;
  // Best effort: the queue that refused the part may refuse this too; the broker then ends the
  // stream when its deadline passes.
  send(protocol::StreamPart::kAbort, kSendFailedReason);
  on_send_failed();
}

void ReplyStream::deliver(protocol::StreamPart part, std::string_view payload) {
  if (broken_) return;
  if (!send(part, payload)) broke();
}

void ReplyStream::consume(std::size_t bytes) { credit_ -= std::min<std::uint64_t>(credit_, bytes); }

void ReplyStream::data(std::string_view bytes) {
  consume(bytes.size());
  deliver(protocol::StreamPart::kData, bytes);
}

void ReplyStream::end(std::string_view last_bytes) {
  consume(last_bytes.size());
  finished_ = true;
  deliver(protocol::StreamPart::kEnd, last_bytes);
}

void ReplyStream::abort(std::string_view reason) {
  finished_ = true;
  deliver(protocol::StreamPart::kAbort, reason.substr(0, protocol::kMaxAbortReason));
}

bool ReplyStream::add_credit(std::uint32_t bytes) {
  const bool fits = credit_ + bytes <= kMaxStreamCredit;
  credit_ = std::min<std::uint64_t>(credit_ + bytes, kMaxStreamCredit);
  wake();
  return fits;
}

void ReplyStream::wake() {
  if (timer_) timer_->cancel();
}

asio::awaitable<void> ReplyStream::wait_for_credit(std::chrono::steady_clock::time_point deadline) {
  if (!timer_) timer_.emplace(executor_);
  timer_->expires_at(deadline);
  boost::system::error_code ec;
  co_await timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace courier::workers
