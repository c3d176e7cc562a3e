#include "gateway/connection_table.hpp"

#include <utility>

namespace courier::gateway {

ConnectionTable::ConnectionTable(Limits limits) : limits_(limits) {}

ConnectionTable::Admission ConnectionTable::open(const std::string& client,
                                                 std::function<void()> evict) {
  Admission out;
  std::lock_guard lock(mutex_);
  std::size_t* mine = nullptr;
  if (limits_.max_per_client > 0) {
    const auto it = per_client_.find(client);
    if (it != per_client_.end()) {
      if (it->second >= limits_.max_per_client) {
        out.refused = Refused::kClientLimit;
        return out;
      }
      mine = &it->second;
    }
  }
  if (total_ >= limits_.max_total) {
    if (idle_.empty()) {
      out.refused = Refused::kFull;
      return out;
    }
    const auto victim = idle_.begin();
    victim->state = State::kEvicted;
    release_place(victim->client);
    evicted_.splice(evicted_.end(), idle_, victim);
    auto close = std::move(victim->evict);
    victim->evict = nullptr;
    if (close) close();
    out.evicted_other = true;
    mine = nullptr;  // release_place may have erased the victim's client (maybe this one)
  }
  if (limits_.max_per_client > 0) {
    if (!mine) mine = &per_client_[client];
    ++*mine;
  }
  ++total_;
  busy_.push_back(Entry{client, std::move(evict), State::kBusy});
  out.lease.emplace(Lease(this, std::prev(busy_.end())));
  return out;
}

void ConnectionTable::release_place(const std::string& client) {
  --total_;
  if (limits_.max_per_client == 0) return;
  const auto it = per_client_.find(client);
  if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
}

void ConnectionTable::set_idle(Entries::iterator entry) {
  std::lock_guard lock(mutex_);
  if (entry->state != State::kBusy) return;
  entry->state = State::kIdle;
  idle_.splice(idle_.end(), busy_, entry);
}

bool ConnectionTable::set_busy(Entries::iterator entry) {
  std::lock_guard lock(mutex_);
  if (entry->state == State::kEvicted) return false;
  if (entry->state == State::kIdle) {
    entry->state = State::kBusy;
    busy_.splice(busy_.end(), idle_, entry);
  }
  return true;
}

void ConnectionTable::close(Entries::iterator entry) {
  std::function<void()> evict;  // destroyed outside the lock
  std::lock_guard lock(mutex_);
  evict = std::move(entry->evict);
  switch (entry->state) {
    case State::kBusy:
      release_place(entry->client);
      busy_.erase(entry);
      break;
    case State::kIdle:
      release_place(entry->client);
      idle_.erase(entry);
      break;
    case State::kEvicted:
      evicted_.erase(entry);
      break;
  }
}

std::size_t ConnectionTable::size() const {
  std::lock_guard lock(mutex_);
  return total_;
}

std::size_t ConnectionTable::idle_count() const {
  std::lock_guard lock(mutex_);
  return idle_.size();
}

std::size_t ConnectionTable::count(const std::string& client) const {
  std::lock_guard lock(mutex_);
  const auto it = per_client_.find(client);
  return it == per_client_.end() ? 0 : it->second;
}

ConnectionTable::Lease::Lease(Lease&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)), entry_(other.entry_) {}

ConnectionTable::Lease::~Lease() {
  if (table_) table_->close(entry_);
}

void ConnectionTable::Lease::idle() {
  if (table_) table_->set_idle(entry_);
}

bool ConnectionTable::Lease::busy() { return table_ && table_->set_busy(entry_); }

}  // namespace courier::gateway
