// One request through the broker as a coroutine: send the envelope through the BrokerClient and
// wait, on the caller's executor, for its reply or until the caller's patience runs out.
#pragma once

#include <chrono>
#include <optional>
#include <zmq.hpp>

#include "common/asio.hpp"
#include "common/frames.hpp"
#include "gateway/broker_client.hpp"

namespace courier::gateway {

// The reply (or the client's own error, e.g. no broker), or nullopt when `patience` ran out and
// the request was cancelled: a reply arriving later is the client's to count and drop. The
// result is delivered on the calling coroutine's executor, so it is decoded on that thread.
asio::awaitable<std::optional<BrokerResult>> call_broker(BrokerClient& broker,
                                                         const protocol::RequestHeader& header,
                                                         zmq::message_t envelope,
                                                         std::chrono::milliseconds patience);

}  // namespace courier::gateway
