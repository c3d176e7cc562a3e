// One request through the broker as a coroutine: send the envelope through the BrokerClient and
// wait, on the caller's executor, for its reply, its stream's parts, or the client's disconnect.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>
#include <zmq.hpp>

#include "common/asio.hpp"
#include "common/frames.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/request_mapper.hpp"

namespace courier::gateway {

// A request in flight at the broker, owned by one coroutine. The parts the BrokerClient delivers
// are queued on the coroutine's executor. While it waits, from kWatchAfter after submit(), the
// client's socket is watched: a peer that closes (or resets) its connection is gone; bytes from
// it (a pipelined request) only end the watch. Destroying it cancels the request at the broker
// unless its final part came.
class BrokerCall {
 public:
  enum class Wake { kPart, kTimeout, kClientGone };
  // A reply within this needs no watch: arming one costs an epoll_ctl() (Asio re-arms the
  // descriptor for every wait) and its cancellation a handler, on every fast request. A client
  // that leaves sooner is found gone this much later.
  static constexpr std::chrono::milliseconds kWatchAfter{10};

  // `client` (may be null: no watch) must outlive this object or stop_watch() being called.
  BrokerCall(BrokerClient& broker, asio::any_io_executor executor, tcp::socket* client);
  ~BrokerCall();
  BrokerCall(const BrokerCall&) = delete;
  BrokerCall& operator=(const BrokerCall&) = delete;

  void submit(const protocol::RequestHeader& header, zmq::message_t envelope);
  // Until a part is queued, the client is gone, or `deadline`.
  asio::awaitable<Wake> wait(std::chrono::steady_clock::time_point deadline);
  bool has_part() const;
  BrokerResult pop();         // the oldest queued part; has_part() must hold
  bool next_is_head() const;  // the oldest queued part is a stream's HEAD
  std::size_t queued() const;
  bool client_gone() const;

  // Sends CANCEL and forgets the request; false if it was over already (final part on its way).
  bool cancel();
  void credit(std::uint32_t bytes);
  const protocol::CorrelationId& id() const { return id_; }
  // Ends the watch, cancelling its wait on the socket: call only while no other operation is
  // pending on that socket (socket.cancel() cancels them all).
  void stop_watch();

 private:
  struct State;
  void watch();

  BrokerClient& broker_;
  std::shared_ptr<State> state_;
  protocol::CorrelationId id_{};
  bool open_ = false;  // submitted and no final part taken, not cancelled
};

// Submits and waits up to `patience` for the first part. kPart: the first part (a reply, the
// client's own error, a stream's HEAD or an ABORT) is queued for call.pop(); after a HEAD the
// rest of the stream follows through the same BrokerCall. kTimeout and kClientGone cancel the
// request (CANCEL to its broker); a reply arriving later is the client's to count and drop.
// (It returns only the wake, not the part: the part would take room in the frame of every
// coroutine that awaits it, for as long as the request waits.)
asio::awaitable<BrokerCall::Wake> call_broker(BrokerCall& call,
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
