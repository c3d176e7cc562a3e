#include "common/signals.hpp"

#include <csignal>
#include <future>

#include "common/asio.hpp"

namespace courier {

struct TerminationSignals::Impl {
  asio::io_context io;
  asio::signal_set signals{io, SIGTERM, SIGINT};
  std::promise<int> received;
};

TerminationSignals::TerminationSignals() : impl_(std::make_unique<Impl>()) {
  impl_->signals.async_wait([this](const boost::system::error_code& ec, int signo) {
    impl_->received.set_value(ec ? 0 : signo);
  });
}

TerminationSignals::~TerminationSignals() = default;

int TerminationSignals::wait() {
  impl_->io.run();  // returns once the one handler has run
  return impl_->received.get_future().get();
}

}  // namespace courier
