// libFuzzer target: arbitrary bytes as a worker's status and as a broker's STATS snapshot (both
// hostile input). Decoding must never throw or crash, and a value it returns must re-encode to
// text that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/status.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace courier;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto status = decode_worker_status(text)) {
    if (decode_worker_status(encode(*status)) != status) std::abort();
  }
  if (const auto stats = decode_broker_stats(text)) {
    if (decode_broker_stats(encode(*stats)) != stats) std::abort();
  }
  return 0;
}
