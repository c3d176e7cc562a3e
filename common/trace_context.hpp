// W3C Trace Context (https://www.w3.org/TR/trace-context/): strict parsing of traceparent and
// tracestate, and the context a hop passes on (the caller's trace continued, or a new one).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace courier::trace {

// "00-<trace-id>-<parent-id>-<flags>": the only version this module writes.
inline constexpr std::size_t kTraceparentLength = 55;
// The spec's bound: a longer tracestate may be dropped.
inline constexpr std::size_t kMaxTracestateLength = 512;
inline constexpr std::size_t kMaxTracestateMembers = 32;

struct Traceparent {
  std::uint8_t version = 0;
  std::string trace_id;   // 32 lowercase hex digits, not all zero
  std::string parent_id;  // 16 lowercase hex digits, not all zero
  std::uint8_t flags = 0;
};

// nullopt unless `value` is a valid traceparent: version 2 lowercase hex other than ff; for 00
// exactly 55 characters; for a later version at least 55, and anything past them must start
// with '-' (the spec's forward-compatibility rule: parse what version 00 defines, ignore the
// rest). Hex must be lowercase and the ids not all zero.
std::optional<Traceparent> parse_traceparent(std::string_view value);

// Version 00 text for `tp` (a later version's extra fields are not passed on).
std::string format_traceparent(const Traceparent& tp);

// True if `value` (the tracestate headers joined with ',') is a list of at most 32 members,
// each key=value with the spec's characters, at most kMaxTracestateLength long in all.
bool valid_tracestate(std::string_view value);

// Fresh ids for a hop: 16 bytes for a trace id (used when a trace starts here) and 8 for the
// span id this hop passes on as parent-id.
struct FreshIds {
  std::array<std::uint8_t, 16> trace{};
  std::array<std::uint8_t, 8> span{};
  // From the kernel's CSPRNG (common/ids), never all zero.
  static FreshIds random();
};

// What a hop sends on: traceparent always, tracestate when the caller's was kept.
struct Context {
  std::string traceparent;
  std::string tracestate;  // empty: none
  std::string trace_id;    // for the logs
  bool continued = false;  // the caller's trace went on; false: a new trace started here
};

// The caller's traceparent values (every header of that name, in order) and tracestate values.
// One valid traceparent: its trace id and flags go on under a new span id (fresh.span). None, an
// invalid one or more than one: a new trace (fresh.trace, flags 00), and the caller's
// tracestate is dropped with it. A tracestate that is not valid is dropped too.
Context next_hop(const std::vector<std::string_view>& traceparents,
                 const std::vector<std::string_view>& tracestates, const FreshIds& fresh);

// The trace id of a traceparent value, or "" if it is not valid (the worker's view of what
// the gateway sent).
std::string trace_id_of(std::string_view traceparent);

}  // namespace courier::trace
