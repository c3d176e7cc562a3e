// Waiting for SIGTERM/SIGINT in a process with libzmq threads: the handler is installed on
// construction (before any work starts) and delivered whichever thread the kernel picks.
#pragma once

#include <memory>

namespace courier {

class TerminationSignals {
 public:
  TerminationSignals();
  ~TerminationSignals();
  // Blocks until SIGTERM or SIGINT arrives; returns its number.
  int wait();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courier
