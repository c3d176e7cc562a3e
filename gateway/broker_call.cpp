#include "gateway/broker_call.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/errors.hpp"

namespace courier::gateway {

using Clock = std::chrono::steady_clock;

// Shared with the broker's callback and the socket watch, which may both run after the owning
// coroutine is gone (a late reply, a wait completing after the call ended).
struct BrokerCall::State {
  explicit State(asio::any_io_executor ex) : executor(ex), timer(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer timer;
  // The oldest part inline (a plain reply allocates nothing more), the later ones after it.
  std::optional<BrokerResult> first;
  std::vector<BrokerResult> more;
  std::size_t next = 0;  // parts of `more` before it were popped

  bool empty() const { return !first && next == more.size(); }
  void push(BrokerResult r) {
    if (!first && more.empty()) {
      first = std::move(r);
    } else {
      more.push_back(std::move(r));
    }
  }
  tcp::socket* client = nullptr;
  bool watching = false;  // a wait is pending on `client` and its result still matters
  // Submitted with a client to watch, and the watch not yet armed: when to arm it.
  std::optional<Clock::time_point> watch_at;
  bool gone = false;
};

BrokerCall::BrokerCall(BrokerClient& broker, asio::any_io_executor executor, tcp::socket* client)
    : broker_(broker), state_(std::make_shared<State>(executor)) {
  state_->client = client;
}

BrokerCall::~BrokerCall() {
  // The pending wait (if any) completes later; it finds the watch over and leaves the socket be.
  state_->watching = false;
  state_->client = nullptr;
  if (open_) broker_.cancel(id_);
}

void BrokerCall::submit(const protocol::RequestHeader& header, zmq::message_t envelope) {
  id_ = header.id;
  open_ = true;
  if (state_->client) state_->watch_at = Clock::now() + kWatchAfter;
  broker_.submit(header, std::move(envelope), [state = state_](BrokerResult r) {
    auto& s = *state;
    asio::post(s.executor, [state, r = std::move(r)]() mutable {
      state->push(std::move(r));
      state->timer.cancel();
    });
  });
}

namespace {

// Arms one wait for readability; what it finds decides whether to arm again.
template <class State>
void arm(const std::shared_ptr<State>& state) {
  state->client->async_wait(tcp::socket::wait_read, [state](const beast::error_code& ec) {
    auto& s = *state;
    if (!s.watching || !s.client) return;  // stopped, or the call is over
    if (!ec && s.client->is_open()) {
      char byte = 0;
      const auto n = ::recv(s.client->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) {  // a pipelined request: the client is there; the session reads it later
        s.watching = false;
        return;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        arm(state);  // spurious readiness
        return;
      }
    }
    // End of stream, a reset, or the socket failed while watched (closed by a write timeout).
    s.watching = false;
    s.gone = true;
    s.timer.cancel();
  });
}

}  // namespace

void BrokerCall::watch() {
  state_->watching = true;
  arm(state_);
}

void BrokerCall::stop_watch() {
  state_->watch_at.reset();
  if (!state_->watching) return;
  state_->watching = false;
  beast::error_code ec;
  if (state_->client) state_->client->cancel(ec);
}

asio::awaitable<BrokerCall::Wake> BrokerCall::wait(Clock::time_point deadline) {
  auto& s = *state_;
  beast::error_code ec;
  // Posted parts and the watch run on this executor too, so nothing can slip between a check
  // and the wait that follows it.
  while (s.empty()) {
    if (s.gone) co_return Wake::kClientGone;
    const auto now = Clock::now();
    if (now >= deadline) co_return Wake::kTimeout;
    auto until = deadline;
    if (s.watch_at) {
      if (now >= *s.watch_at) {
        s.watch_at.reset();
        watch();
      } else {
        until = std::min(until, *s.watch_at);
      }
    }
    s.timer.expires_at(until);
    co_await s.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return Wake::kPart;
}

bool BrokerCall::has_part() const { return !state_->empty(); }

std::size_t BrokerCall::queued() const {
  return (state_->first ? 1 : 0) + state_->more.size() - state_->next;
}

bool BrokerCall::client_gone() const { return state_->gone; }

bool BrokerCall::next_is_head() const {
  const auto& s = *state_;
  if (s.first) return s.first->kind == BrokerResult::Kind::kHead;  // the oldest, as in pop()
  return s.next < s.more.size() && s.more[s.next].kind == BrokerResult::Kind::kHead;
}

BrokerResult BrokerCall::pop() {
  auto& s = *state_;
  BrokerResult r;
  if (s.first) {
    r = std::move(*s.first);
    s.first.reset();
  } else {
    r = std::move(s.more[s.next++]);
    if (s.next == s.more.size()) {
      s.more.clear();
      s.next = 0;
    }
  }
  if (r.final()) open_ = false;
  return r;
}

bool BrokerCall::cancel() {
  if (!open_) return false;
  open_ = false;
  return broker_.cancel(id_);
}

void BrokerCall::credit(std::uint32_t bytes) {
  if (open_ && bytes > 0) broker_.credit(id_, bytes);
}

asio::awaitable<BrokerCall::Wake> call_broker(BrokerCall& call,
                                              const protocol::RequestHeader& header,
                                              zmq::message_t envelope,
                                              std::chrono::milliseconds patience) {
  call.submit(header, std::move(envelope));
  auto deadline = Clock::now() + patience;
  for (;;) {
    const auto wake = co_await call.wait(deadline);
    if (wake == BrokerCall::Wake::kPart) co_return wake;
    if (wake == BrokerCall::Wake::kClientGone) {
      call.cancel();
      co_return wake;
    }
    if (call.cancel()) co_return wake;
    // The reply is already on its way to this executor: wait for it.
    deadline = Clock::now() + std::chrono::seconds(5);
  }
}

ClientReply response_for(BrokerResult&& result, const HttpRequest& request,
                         std::string_view service, std::string_view request_id) {
  ReplyEnvelope reply;
  if (result.local) {
    reply = std::move(*result.local);
  } else if (const auto ec = decode(protocol::view(result.envelope), reply)) {
    ClientReply out;
    out.problem = "invalid reply envelope: " + ec.message();
    out.code = error_code(ErrorKind::kBadResponse, service);
    out.response = error_response(static_cast<int>(ErrorKind::kBadResponse), service, out.problem,
                                  &request, request_id);
    return out;
  }
  return checked_response(std::move(reply), request, service, request_id);
}

}  // namespace courier::gateway
