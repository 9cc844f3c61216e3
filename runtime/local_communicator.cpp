// LocalCommunicator: mailboxes per ordered rank pair under one mutex and one wake-up condition per rank;
// payloads are copied outside the lock, small ones from the mailbox's own copy (eager), large ones straight
// from the sender's buffer, which stays valid until the receiver has taken it.
#include "runtime/local_communicator.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/error.h"

namespace moerig::runtime {

/// State shared by the ranks of one local communicator.
class LocalWorld {
  public:
    /// Messages up to this size are sent eagerly: copied into the mailbox at post, so the sender does not
    /// wait for its receivers (a decode step's messages are a few KB; waiting for them to be taken cost each
    /// sender a sleep and a wake-up per exchange). Larger ones are copied once, straight from the sender.
    static constexpr size_t kEagerBytes = size_t{64} << 10;

    struct Posted {
        const void* data = nullptr;
        size_t num_bytes = 0;
        LinkEmulation::Departure departure;
        std::vector<std::byte> eager;  // the payload of an eager message (data points here)
        bool popped = false;           // a receiver is copying it (outside the lock)
        bool taken = false;
    };

    LocalWorld(int num_ranks, std::shared_ptr<LinkEmulation> links)
        : num_ranks_(num_ranks), links_(std::move(links)), cv_(num_ranks), mailboxes_(num_ranks * num_ranks) {}

    int num_ranks_;
    std::shared_ptr<LinkEmulation> links_;
    std::mutex mutex_;
    // One condition per rank, waited on by that rank's thread: a post wakes its receiver and a
    // take wakes its sender, not every card (with one shared condition each event woke all ranks, which
    // costs a context switch per idle card per message on a decode step).
    std::vector<std::condition_variable> cv_;
    std::vector<std::deque<std::shared_ptr<Posted>>> mailboxes_;  // [src * num_ranks + dst], in issue order
    bool aborted_ = false;
    std::string abort_reason_;
    int barrier_count_ = 0;
    uint64_t barrier_generation_ = 0;
    // Exclusive compute clock: the rank computing now (-1: none); the others wait for it before they compute.
    int compute_holder_ = -1;
    std::condition_variable compute_cv_;

    void throw_if_aborted(int rank) const {
        if (aborted_) MOERIG_THROW(CommunicatorAborted, "communicator rank {}: aborted ({})", rank, abort_reason_);
    }
    void abort_locked(const std::string& reason) {
        if (!aborted_) {
            aborted_ = true;
            abort_reason_ = reason;
        }
        notify_all_ranks();
    }
    void notify_all_ranks() {
        for (auto& cv : cv_) cv.notify_all();
        compute_cv_.notify_all();
    }
};

LocalCommunicator::LocalCommunicator(std::shared_ptr<LocalWorld> world, int rank)
    : world_(std::move(world)), rank_(rank) {}

int LocalCommunicator::size() const {
    return world_->num_ranks_;
}

const LinkEmulation* LocalCommunicator::links() const {
    return world_->links_.get();
}

namespace {

/// CPU seconds the calling thread has run.
double thread_cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

void LocalCommunicator::enable_compute_clock(bool exclusive) {
    MOERIG_CHECK(world_->links_, ConfigError,
                 "compute clock on rank {}: needs link emulation (the virtual clocks live there)", rank_);
    compute_clock_ = true;
    exclusive_compute_ = exclusive;
    compute_mark_s_ = thread_cpu_s();
}

void LocalCommunicator::start_compute() {
    if (!compute_clock_) return;
    if (exclusive_compute_) {
        LocalWorld& w = *world_;
        std::unique_lock lock(w.mutex_);
        // After an abort the rank goes on without the token: its next communication call throws.
        w.compute_cv_.wait(lock, [&] { return w.aborted_ || w.compute_holder_ < 0 || w.compute_holder_ == rank_; });
        if (!w.aborted_) w.compute_holder_ = rank_;
    }
    compute_mark_s_ = thread_cpu_s();
}

void LocalCommunicator::account_compute() {
    if (!compute_clock_) return;
    std::lock_guard lock(world_->mutex_);
    account_compute_locked();
}

void LocalCommunicator::release_compute() {
    if (!compute_clock_ || !exclusive_compute_) return;
    std::lock_guard lock(world_->mutex_);
    release_compute_locked();
}

void LocalCommunicator::release_compute_locked() {
    if (exclusive_compute_ && world_->compute_holder_ == rank_) {
        world_->compute_holder_ = -1;
        world_->compute_cv_.notify_one();
    }
}

void LocalCommunicator::account_compute_locked() {
    if (!compute_clock_) return;
    const double now = thread_cpu_s();
    const double delta = std::max(0.0, now - compute_mark_s_);
    compute_mark_s_ = now;
    world_->links_->advance_to(rank_, world_->links_->clock_s(rank_) + delta);
    stats_.compute_s += delta;
    release_compute_locked();
}

void LocalCommunicator::issue_group(const std::vector<Op>& sends, const std::vector<Op>& recvs) {
    const auto wall_start = std::chrono::steady_clock::now();
    LocalWorld& w = *world_;
    const int n = w.num_ranks_;

    // Eager payloads are copied before the lock is taken.
    std::vector<std::shared_ptr<LocalWorld::Posted>> posted(sends.size());
    for (size_t i = 0; i < sends.size(); ++i) {
        auto& p = posted[i] = std::make_shared<LocalWorld::Posted>();
        p->num_bytes = sends[i].num_bytes;
        p->data = sends[i].data;
        if (sends[i].peer != rank_ && sends[i].num_bytes <= LocalWorld::kEagerBytes) {
            const auto* from = static_cast<const std::byte*>(sends[i].data);
            p->eager.assign(from, from + sends[i].num_bytes);
            p->data = p->eager.data();
        }
    }
    const auto waits_for_receiver = [](const std::shared_ptr<LocalWorld::Posted>& p) { return p->eager.empty(); };
    std::vector<LinkMessage> incoming;
    std::vector<LinkEmulation::Departure> incoming_departures;
    double start_s = 0;
    double own_up_end = 0;

    std::unique_lock lock(w.mutex_);
    w.throw_if_aborted(rank_);
    account_compute_locked();
    if (w.links_) {
        start_s = w.links_->clock_s(rank_);
        std::vector<LinkMessage> out;
        for (const Op& s : sends) out.push_back(LinkMessage{rank_, s.peer, s.num_bytes});
        const auto departures = w.links_->depart(rank_, out);
        for (size_t i = 0; i < sends.size(); ++i) posted[i]->departure = departures[i];
        if (!departures.empty()) own_up_end = departures.back().up_end;
    }
    for (size_t i = 0; i < sends.size(); ++i) w.mailboxes_[rank_ * n + sends[i].peer].push_back(posted[i]);
    for (int peer = 0; peer < n; ++peer) {
        if (peer != rank_ && std::any_of(sends.begin(), sends.end(), [&](const Op& s) { return s.peer == peer; }))
            w.cv_[peer].notify_all();
    }

    struct Taken {
        int src_rank;
        size_t issue_idx;
        LinkEmulation::Departure departure;
        size_t num_bytes;
    };
    std::vector<Taken> taken;
    for (size_t i = 0; i < recvs.size(); ++i) {
        const Op& r = recvs[i];
        auto& box = w.mailboxes_[r.peer * n + rank_];
        w.cv_[rank_].wait(lock, [&] { return w.aborted_ || !box.empty(); });
        w.throw_if_aborted(rank_);
        const std::shared_ptr<LocalWorld::Posted> p = box.front();  // keeps an eager payload alive
        box.pop_front();
        p->popped = true;
        if (p->num_bytes != r.num_bytes) {
            const std::string reason = fmt::format("rank {} expected {} bytes from rank {}, which sent {}", rank_,
                                                   r.num_bytes, r.peer, p->num_bytes);
            p->taken = true;
            w.abort_locked(reason);
            MOERIG_THROW(ConfigError, "communicator: {}", reason);
        }
        lock.unlock();
        if (r.num_bytes != 0 && r.data != p->data) std::memcpy(r.data, p->data, r.num_bytes);
        lock.lock();
        p->taken = true;
        taken.push_back(Taken{r.peer, i, p->departure, r.num_bytes});
        if (r.peer != rank_ && waits_for_receiver(p)) w.cv_[r.peer].notify_all();
    }
    // The sender's buffers must stay valid until every receiver has copied out of them (eager payloads
    // are the mailbox's own).
    w.cv_[rank_].wait(lock, [&] {
        return w.aborted_ || std::all_of(posted.begin(), posted.end(),
                                         [&](const auto& p) { return !waits_for_receiver(p) || p->taken; });
    });
    if (w.aborted_) {
        // Peers may still point into this rank's buffers: withdraw what was not taken before returning.
        for (int dst = 0; dst < n; ++dst) {
            auto& box = w.mailboxes_[rank_ * n + dst];
            box.erase(std::remove_if(box.begin(), box.end(),
                                     [&](const std::shared_ptr<LocalWorld::Posted>& p) {
                                         return waits_for_receiver(p) &&
                                                std::find(posted.begin(), posted.end(), p) != posted.end();
                                     }),
                      box.end());
        }
        w.cv_[rank_].wait(lock, [&] {
            return std::all_of(posted.begin(), posted.end(),
                               [&](const auto& p) { return !waits_for_receiver(p) || !p->popped || p->taken; });
        });
        w.throw_if_aborted(rank_);
    }

    double moved_s = 0;
    if (w.links_) {
        // The downlink takes messages in the order they become available (staged: fully in host memory),
        // ties by sender rank: a fixed order, whatever the threads did.
        std::stable_sort(taken.begin(), taken.end(), [](const Taken& a, const Taken& b) {
            if (a.departure.up_end != b.departure.up_end) return a.departure.up_end < b.departure.up_end;
            return a.src_rank != b.src_rank ? a.src_rank < b.src_rank : a.issue_idx < b.issue_idx;
        });
        for (const Taken& t : taken) {
            incoming.push_back(LinkMessage{t.src_rank, rank_, t.num_bytes});
            incoming_departures.push_back(t.departure);
        }
        const double arrived = w.links_->arrive(rank_, start_s, incoming, incoming_departures);
        moved_s = w.links_->advance_to(rank_, std::max(arrived, own_up_end));
    }
    const bool sleep = w.links_ && w.links_->sleeps();
    lock.unlock();

    count_group(sends, recvs);
    stats_.modelled_s += moved_s;
    // Demo mode: the group takes (at least) its modelled time in wall-clock terms; the real copies
    // above already spent part of it.
    if (sleep && moved_s > 0) {
        std::this_thread::sleep_until(wall_start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                       std::chrono::duration<double>(moved_s)));
    }
    stats_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    // Receiving (the copies above stand for the link transfer) and waiting are not compute.
    start_compute();
}

void LocalCommunicator::barrier() {
    const auto wall_start = std::chrono::steady_clock::now();
    struct AddWait {
        LocalCommunicator& comm;
        std::chrono::steady_clock::time_point start;
        ~AddWait() {
            comm.stats_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            comm.start_compute();
        }
    } add_wait{*this, wall_start};
    LocalWorld& w = *world_;
    std::unique_lock lock(w.mutex_);
    w.throw_if_aborted(rank_);
    account_compute_locked();
    const uint64_t generation = w.barrier_generation_;
    if (++w.barrier_count_ == w.num_ranks_) {
        w.barrier_count_ = 0;
        ++w.barrier_generation_;
        if (w.links_) {
            std::vector<int> all(w.num_ranks_);
            for (int r = 0; r < w.num_ranks_; ++r) all[r] = r;
            w.links_->align(all);
        }
        w.notify_all_ranks();
        return;
    }
    w.cv_[rank_].wait(lock, [&] { return w.aborted_ || w.barrier_generation_ != generation; });
    w.throw_if_aborted(rank_);
}

void LocalCommunicator::recover() {
    forget_group();
    std::lock_guard lock(world_->mutex_);
    LocalWorld& w = *world_;
    for (auto& box : w.mailboxes_) box.clear();
    w.aborted_ = false;
    w.abort_reason_.clear();
    w.barrier_count_ = 0;
    w.compute_holder_ = -1;
}

void LocalCommunicator::abort(const std::string& reason) {
    std::lock_guard lock(world_->mutex_);
    world_->abort_locked(fmt::format("rank {}: {}", rank_, reason));
}

std::vector<std::unique_ptr<LocalCommunicator>> make_local_communicators(int num_ranks,
                                                                         std::shared_ptr<LinkEmulation> links) {
    MOERIG_CHECK(num_ranks >= 1, ConfigError, "a local communicator needs at least one card, got {}", num_ranks);
    MOERIG_CHECK(!links || links->num_cards() == num_ranks, ConfigError,
                 "link emulation describes {} cards but the communicator has {}", links ? links->num_cards() : 0,
                 num_ranks);
    auto world = std::make_shared<LocalWorld>(num_ranks, std::move(links));
    std::vector<std::unique_ptr<LocalCommunicator>> comms;
    for (int r = 0; r < num_ranks; ++r) comms.push_back(std::make_unique<LocalCommunicator>(world, r));
    return comms;
}

void run_on_ranks(const std::vector<std::unique_ptr<LocalCommunicator>>& comms, const std::function<void(int)>& fn) {
    const int n = static_cast<int>(comms.size());
    std::vector<std::exception_ptr> errors(n);
    std::vector<bool> aborted(n, false);
    {
        std::vector<std::jthread> threads;
        for (int r = 0; r < n; ++r) {
            threads.emplace_back([&, r] {
                try {
                    fn(r);
                    comms[r]->release_compute();
                } catch (const CommunicatorAborted&) {
                    errors[r] = std::current_exception();
                    aborted[r] = true;
                } catch (const std::exception& e) {
                    errors[r] = std::current_exception();
                    comms[r]->abort(e.what());
                }
            });
        }
    }
    rethrow_rank_error(errors, aborted);
}

void rethrow_rank_error(const std::vector<std::exception_ptr>& errors, const std::vector<bool>& aborted) {
    // The rank that failed first is the one whose error is not an abort; ranks that were merely
    // released by the abort come second.
    for (size_t r = 0; r < errors.size(); ++r)
        if (errors[r] && !aborted[r]) std::rethrow_exception(errors[r]);
    for (size_t r = 0; r < errors.size(); ++r)
        if (errors[r]) std::rethrow_exception(errors[r]);
}

}  // namespace moerig::runtime
