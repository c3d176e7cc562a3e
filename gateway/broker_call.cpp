#include "gateway/broker_call.hpp"

#include <memory>

#include "common/errors.hpp"

namespace courier::gateway {

asio::awaitable<std::optional<BrokerResult>> call_broker(BrokerClient& broker,
                                                         const protocol::RequestHeader& header,
                                                         zmq::message_t envelope,
                                                         std::chrono::milliseconds patience) {
  // Shared with the callback, which may run after this coroutine is gone (a late reply).
  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::optional<BrokerResult> result;
  };
  const auto id = header.id;
  const auto executor = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(executor);
  waiter->timer.expires_after(patience);
  broker.submit(header, std::move(envelope), [waiter, executor](BrokerResult r) {
    asio::post(executor, [waiter, r = std::move(r)]() mutable {
      waiter->result = std::move(r);
      waiter->timer.cancel();
    });
  });

  beast::error_code ec;
  while (!waiter->result) {
    co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (waiter->result) break;
    if (ec == asio::error::operation_aborted) continue;
    if (broker.cancel(id)) co_return std::nullopt;
    // The reply is already on its way to this executor: wait for it.
    waiter->timer.expires_after(std::chrono::seconds(5));
  }
  co_return std::move(waiter->result);
}

ClientReply response_for(BrokerResult&& result, const HttpRequest& request,
                         std::string_view service, std::string_view request_id) {
  ReplyEnvelope reply;
  if (result.local) {
    reply = std::move(*result.local);
  } else if (const auto ec = decode(protocol::view(result.envelope), reply)) {
    ClientReply out;
    out.problem = "invalid reply envelope: " + ec.message();
    out.response = error_response(static_cast<int>(ErrorKind::kBadResponse), service, out.problem,
                                  &request, request_id);
    return out;
  }
  return checked_response(std::move(reply), request, service, request_id);
}

}  // namespace courier::gateway
