#include "gateway/broker_call.hpp"

#include <memory>

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

}  // namespace courier::gateway
