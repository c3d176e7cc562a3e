// libFuzzer target: arbitrary bytes as request and reply envelopes. A successful decode must
// re-encode to something that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/envelope.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace courier;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  RequestEnvelope request;
  if (!decode(bytes, request)) {
    const auto again = encode(request);
    RequestEnvelope round;
    if (decode({again.data<char>(), again.size()}, round) || !(round == request)) std::abort();
  }
  ReplyEnvelope reply;
  if (!decode(bytes, reply)) {
    const auto again = encode(reply);
    ReplyEnvelope round;
    if (decode({again.data<char>(), again.size()}, round) || !(round == reply)) std::abort();
  }
  return 0;
}
