// What the broker counts, for the whole broker and (a subset) per service. Read by STATS and by
// the shutdown log line; the names in the STATS JSON are stats_snapshot.cpp's.
#pragma once

#include <cstdint>

namespace courier::broker {

struct Counters {
  std::uint64_t requests = 0;    // accepted from gateways
  std::uint64_t dispatched = 0;  // sent to workers (including requeues)
  std::uint64_t replies = 0;     // forwarded to gateways
  std::uint64_t requeued = 0;
  std::uint64_t worker_lost_replies = 0;  // 502 WORKER_LOST
  std::uint64_t expired = 0;              // 504 while queued
  std::uint64_t rejected_overloaded = 0;  // 503 OVERLOADED
  std::uint64_t rejected_no_workers = 0;  // 503 UNAVAILABLE "no workers"
  std::uint64_t malformed = 0;            // frames dropped as garbage
  std::uint64_t late_replies = 0;         // reply for a request not held by that worker
  std::uint64_t duplicate_requests = 0;   // correlation id already known
  std::uint64_t rerouted_requests = 0;    // ... from another connection: its reply follows it
  std::uint64_t unroutable = 0;           // sends refused by a ROUTER socket
  std::uint64_t gateway_gone_drops = 0;   // requests dropped because their gateway vanished
  std::uint64_t orphans = 0;              // in flight far past the deadline, forgotten
  std::uint64_t stall_drops = 0;          // queued when the broker stalled: 503, never run
  std::uint64_t workers_lost = 0;
  // Streamed replies and cancellation (docs/protocol.md, "Streams" and "Cancellation").
  std::uint64_t streams = 0;              // requests a worker answered with STREAM
  std::uint64_t stream_aborts = 0;        // streams that reached their gateway as ABORT
  std::uint64_t cancelled_queued = 0;     // CANCEL of a queued request: dropped, never dispatched
  std::uint64_t cancelled_in_flight = 0;  // CANCEL forwarded to the worker holding the request
  std::uint64_t foreign_cancels = 0;      // CANCEL from a gateway that did not send the request
  // Hostile or broken peers (docs/protocol.md, "What the broker refuses"). `malformed` is the sum
  // of the malformed_* reasons.
  std::uint64_t malformed_shape = 0;      // frame count, tag or command
  std::uint64_t malformed_field = 0;      // a field's size or value (service name, id, capacity)
  std::uint64_t malformed_misrouted = 0;  // a command that has no business on that socket
  std::uint64_t malformed_status = 0;     // a worker status that is not a bounded JSON object
  std::uint64_t handler_errors = 0;       // an exception caught while handling one message
  std::uint64_t refused_services = 0;     // READY for an undeclared service, or past the cap
  std::uint64_t refused_workers = 0;      // READY past the per-service worker cap
  std::uint64_t refused_gateways = 0;     // messages from a gateway past the gateway cap
  std::uint64_t foreign_ids = 0;          // REQUEST re-using an id held for another gateway
  std::uint64_t peers_disconnected = 0;   // workers forgotten for repeated garbage
  // CURVE handshakes refused by the ZAP handler, per socket (broker-wide only).
  std::uint64_t curve_denied_gateways = 0;
  std::uint64_t curve_denied_workers = 0;
  // Times the broker's loop woke (broker-wide only): under load well under one per message, as
  // one wake-up reads a batch; idle, about one per tick. A loop that spins shows here first.
  std::uint64_t loop_wakeups = 0;
};

}  // namespace courier::broker
