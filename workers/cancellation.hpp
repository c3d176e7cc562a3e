// A request's cancellation token: a flag the client's CANCEL sets, and a hook that interrupts
// whatever the request is waiting on at that moment (a slot, an upstream exchange, a backoff).
#pragma once

#include <functional>
#include <utility>

namespace courier::workers {

// Single-threaded: cancel() and every Scope run on the executor that runs the request.
class Cancellation {
 public:
  Cancellation() = default;
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  bool cancelled() const { return cancelled_; }

  // Marks the request cancelled and runs the current hook; later calls do nothing.
  void cancel() {
    if (cancelled_) return;
    cancelled_ = true;
    if (hook_) {
      // The hook may end the wait whose Scope then restores an older hook: call a copy.
      auto hook = std::move(hook_);
      hook_ = nullptr;
      hook();
    }
  }

  // Installs what cancel() interrupts for as long as it lives; the hook it replaced comes back
  // after it, so an inner wait (the credit wait of a stream) can take over from an outer one
  // (the exchange). A null token makes it a no-op, for callers that cannot be cancelled.
  class Scope {
   public:
    Scope(Cancellation* token, std::function<void()> hook) : token_(token) {
      if (token_) previous_ = std::exchange(token_->hook_, std::move(hook));
    }
    ~Scope() {
      if (token_) token_->hook_ = std::move(previous_);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Cancellation* token_;
    std::function<void()> previous_;
  };

 private:
  bool cancelled_ = false;
  std::function<void()> hook_;
};

}  // namespace courier::workers
