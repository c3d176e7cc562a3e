// Who holds the gateway's client connections: a cap in all and one per client address, and at the
// cap the connection idle longest gives up its place to a new one. Thread-safe, no I/O of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace courier::gateway {

class ConnectionTable {
  struct Entry;
  using Entries = std::list<Entry>;

 public:
  struct Limits {
    std::size_t max_total = 1;
    std::size_t max_per_client = 0;  // 0: no limit per address
  };

  // A connection's place in the table, given back when the lease is destroyed. Busy (not to be
  // closed for room) from the start until idle() is called.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();

    // Waiting for a request and holding none: from now on it may be evicted.
    void idle();
    // A request has begun. False when the connection was evicted meanwhile: close it.
    bool busy();

   private:
    friend class ConnectionTable;
    Lease(ConnectionTable* table, Entries::iterator entry) : table_(table), entry_(entry) {}
    ConnectionTable* table_;
    Entries::iterator entry_;
  };

  enum class Refused { kClientLimit, kFull };
  struct Admission {
    std::optional<Lease> lease;  // empty when refused
    Refused refused = Refused::kFull;
    bool evicted_other = false;  // an idle connection was evicted to make room
  };

  explicit ConnectionTable(Limits limits);

  // A new connection from `client`. At the cap, the longest-idle connection is evicted: its
  // place goes to the new one at once, and its `evict` is called, under the table's lock, from
  // the calling thread. `evict` must only schedule the close (post to the connection's strand);
  // it is called at most once, and never after the connection's lease is gone.
  Admission open(const std::string& client, std::function<void()> evict);

  std::size_t size() const;  // connections holding a place (evicted ones do not)
  std::size_t idle_count() const;
  std::size_t count(const std::string& client) const;

 private:
  enum class State { kBusy, kIdle, kEvicted };
  struct Entry {
    std::string client;
    std::function<void()> evict;
    State state = State::kBusy;
  };

  void release_place(const std::string& client);  // with mutex_ held
  void set_idle(Entries::iterator entry);
  bool set_busy(Entries::iterator entry);
  void close(Entries::iterator entry);

  const Limits limits_;
  mutable std::mutex mutex_;
  // An entry moves between the lists by splice: no allocation per request. idle_ is in the order
  // the connections went idle, so its front has been idle longest.
  Entries busy_;
  Entries idle_;
  Entries evicted_;  // closing; their places are already given away
  std::unordered_map<std::string, std::size_t> per_client_;
  std::size_t total_ = 0;
};

}  // namespace courier::gateway
