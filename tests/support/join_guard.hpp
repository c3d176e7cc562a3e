// Joins threads when a test leaves their scope, also through a failed ASSERT (which returns at
// once): a std::thread destroyed while joinable terminates the test binary, orphaning the processes
// it started. `first` runs before the joins, to tell the threads to finish (a stop flag, an
// io_context to stop).
#pragma once

#include <functional>
#include <thread>
#include <utility>
#include <vector>

namespace courier::testing {

class JoinGuard {
 public:
  explicit JoinGuard(std::vector<std::thread>& threads, std::function<void()> first = {})
      : threads_(&threads), first_(std::move(first)) {}
  explicit JoinGuard(std::thread& thread, std::function<void()> first = {})
      : thread_(&thread), first_(std::move(first)) {}
  ~JoinGuard() {
    if (first_) first_();
    if (thread_ && thread_->joinable()) thread_->join();
    if (threads_) {
      for (auto& t : *threads_) {
        if (t.joinable()) t.join();
      }
    }
  }
  JoinGuard(const JoinGuard&) = delete;
  JoinGuard& operator=(const JoinGuard&) = delete;

 private:
  std::vector<std::thread>* threads_ = nullptr;
  std::thread* thread_ = nullptr;
  std::function<void()> first_;
};

}  // namespace courier::testing
