#include "workers/reply_stream.hpp"

#include <algorithm>

namespace courier::workers {

void ReplyStream::head(const ReplyEnvelope& head) {
  started_ = true;
  send_head(head);
}

void ReplyStream::consume(std::size_t bytes) { credit_ -= std::min<std::uint64_t>(credit_, bytes); }

void ReplyStream::data(std::string_view bytes) {
  consume(bytes.size());
  send(protocol::StreamPart::kData, bytes);
}

void ReplyStream::end(std::string_view last_bytes) {
  consume(last_bytes.size());
  finished_ = true;
  send(protocol::StreamPart::kEnd, last_bytes);
}

void ReplyStream::abort(std::string_view reason) {
  finished_ = true;
  send(protocol::StreamPart::kAbort, reason.substr(0, protocol::kMaxAbortReason));
}

void ReplyStream::add_credit(std::uint32_t bytes) {
  credit_ = std::min<std::uint64_t>(credit_ + bytes, protocol::kMaxCredit);
  wake();
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
