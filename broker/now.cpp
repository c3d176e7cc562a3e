#include "broker/now.hpp"

#include "common/protocol.hpp"

namespace courier::broker {

Now Now::current() { return {Clock::now(), protocol::unix_ms_now()}; }

}  // namespace courier::broker
