// One request through the broker as a coroutine: send the envelope through the BrokerClient and
// wait, on the caller's executor, for its reply or until the caller's patience runs out; then
// the client's response for what came back.
#pragma once

#include <chrono>
#include <optional>
#include <zmq.hpp>

#include "common/asio.hpp"
#include "common/frames.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/request_mapper.hpp"

namespace courier::gateway {

// The reply (or the client's own error, e.g. no broker), or nullopt when `patience` ran out and
// the request was cancelled: a reply arriving later is the client's to count and drop. The
// result is delivered on the calling coroutine's executor, so it is decoded on that thread.
asio::awaitable<std::optional<BrokerResult>> call_broker(BrokerClient& broker,
                                                         const protocol::RequestHeader& header,
                                                         zmq::message_t envelope,
                                                         std::chrono::milliseconds patience);

// The client's response for a broker result: the reply envelope decoded and checked
// (checked_response), or 502 <SVC>_BAD_RESPONSE when it does not decode. Whoever sent it (a
// worker, a broker, or a peer pretending to be one), nothing of an invalid reply reaches the
// client.
ClientReply response_for(BrokerResult&& result, const HttpRequest& request,
                         std::string_view service, std::string_view request_id);

}  // namespace courier::gateway
