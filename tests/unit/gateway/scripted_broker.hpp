// A broker the gateway's unit tests drive by hand: a ROUTER socket on loopback that answers
// heartbeats and STATS, records the requests, credits and cancels it gets and replies (or streams)
// when the test says so.
#pragma once

#include <chrono>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/envelope.hpp"
#include "common/frames.hpp"

namespace courier::gateway {

// A broker the test drives by hand: answers heartbeats and STATS, records the requests it gets.
class ScriptedBroker {
 public:
  explicit ScriptedBroker(zmq::context_t& context, std::string stats)
      : socket_(context, zmq::socket_type::router), stats_(std::move(stats)) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  const std::string& endpoint() const { return endpoint_; }

  struct Received {
    std::string peer;  // routing id
    protocol::CorrelationId id{};
    std::uint8_t flags = 0;
    std::string envelope;
  };
  std::vector<Received> requests;
  struct Control {
    std::string peer;
    protocol::CorrelationId id{};
    std::uint32_t bytes = 0;  // CREDIT only
  };
  std::vector<Control> credits;
  std::vector<Control> cancels;

  // Handles whatever arrives within `wait`.
  void pump(std::chrono::milliseconds wait = std::chrono::milliseconds(5)) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) <= 0) return;
    for (;;) {
      protocol::Frames frames;
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        return;
      }
      protocol::Command command{};
      if (protocol::parse_command(frames, 1, command)) continue;
      if (command == protocol::Command::kHeartbeat) {
        protocol::Frames hb;
        hb.push_back(copy(frames[0]));
        protocol::add_header(hb, protocol::Command::kHeartbeat);
        zmq::send_multipart(socket_, hb);
      } else if (command == protocol::Command::kStats) {
        protocol::Frames st;
        st.push_back(copy(frames[0]));
        protocol::add_header(st, protocol::Command::kStats);
        st.push_back(protocol::id_frame({}));
        st.emplace_back(stats_.data(), stats_.size());
        zmq::send_multipart(socket_, st);
      } else if (command == protocol::Command::kRequest) {
        protocol::RequestHeader header;
        if (protocol::parse_request(frames, 1, header)) continue;
        requests.push_back({std::string(protocol::view(frames[0])), header.id, header.flags,
                            std::string(protocol::view(frames.back()))});
      } else if (command == protocol::Command::kCredit) {
        Control c{std::string(protocol::view(frames[0]))};
        if (protocol::parse_credit(frames, 1, c.id, c.bytes)) continue;
        credits.push_back(c);
      } else if (command == protocol::Command::kCancel) {
        Control c{std::string(protocol::view(frames[0]))};
        if (protocol::parse_cancel(frames, 1, c.id)) continue;
        cancels.push_back(c);
      }
    }
  }

  void reply(const Received& r, const std::string& body) {
    protocol::Frames frames;
    frames.emplace_back(r.peer.data(), r.peer.size());
    ReplyEnvelope reply;
    reply.id = r.id;
    reply.status = 200;
    reply.body = body;
    protocol::add_reply(frames, r.id, encode(reply));
    zmq::send_multipart(socket_, frames);
  }

  // One STREAM part for `r`; a HEAD carries a reply envelope with `status` and `headers`.
  void stream(const Received& r, protocol::StreamPart part, const std::string& payload) {
    protocol::Frames frames;
    frames.emplace_back(r.peer.data(), r.peer.size());
    protocol::StreamHeader header{r.id, part, protocol::unix_ms_now() + 60'000};
    protocol::add_stream(frames, header, zmq::message_t(payload.data(), payload.size()));
    zmq::send_multipart(socket_, frames);
  }
  void head(const Received& r, unsigned status = 200, Headers headers = {}) {
    ReplyEnvelope reply;
    reply.id = r.id;
    reply.status = status;
    reply.headers = std::move(headers);
    const auto frame = encode(reply);
    stream(r, protocol::StreamPart::kHead, std::string(protocol::view(frame)));
  }

  void close() { socket_.close(); }

 private:
  static zmq::message_t copy(const zmq::message_t& m) { return zmq::message_t(m.data(), m.size()); }
  zmq::socket_t socket_;
  std::string stats_;
  std::string endpoint_;
};

inline const std::string kServes =
    R"({"broker_id":"b","gateways":1,"services":{"svc":{"workers":1,"capacity":4}},"counters":{}})";
inline const std::string kServesNothing =
    R"({"broker_id":"b","gateways":1,"services":{"svc":{"workers":0,"capacity":0}},"counters":{}})";

}  // namespace courier::gateway
