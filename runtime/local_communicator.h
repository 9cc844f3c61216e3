// Communicators for virtual cards in one process: one rank per card, each driven by its own thread.
// Grouped sends are posted at group_end; small messages are copied into the mailbox (eager) and the
// sender does not wait for them, large ones are received by copying straight from the sender's buffer
// and the sender returns once every one of them has been taken. Optional link emulation models
// the time each exchange would take on the rig's PCIe links (and can sleep to match it).
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "runtime/communicator.h"
#include "runtime/link_emulation.h"

namespace moerig::runtime {

class LocalWorld;

/// Raised on every rank whose communicator was aborted because another rank failed; run_on_ranks
/// reports the failing rank's own error instead.
class CommunicatorAborted : public Error {
    using Error::Error;
};

class LocalCommunicator final : public GroupedCommunicator {
  public:
    LocalCommunicator(std::shared_ptr<LocalWorld> world, int rank);

    int rank() const override { return rank_; }
    int size() const override;

    void barrier() override;

    /// Fails every rank's pending and future calls with an Error carrying reason: a card thread that
    /// hits an error calls this so that its peers do not wait for it forever.
    void abort(const std::string& reason);

    /// The link model shared by all ranks (nullptr without emulation).
    const LinkEmulation* links() const;

    /// After an abort, once no rank is inside a call any more (their threads have returned): forgets the abort,
    /// every undelivered message, a half-counted barrier and this rank's open group, so the ranks can
    /// communicate again. Call it on every rank's communicator.
    void recover();

    /// Compute clock (needs link emulation): the CPU time this rank's thread spends between communication
    /// calls moves the rank's virtual clock forward before its next group departs, so the emulation's clocks
    /// describe a rig on which every card computes on a processor of its own, whatever the host's core count:
    /// compute as measured (thread CPU time, which excludes time the thread waits for a core), links as
    /// modelled, ordered by the real message dependencies. start_compute() marks the start of a step on the
    /// calling thread (CPU time before it does not count); account_compute() puts the time since the last
    /// mark (or communication call) on the clock, for compute that no message follows.
    /// exclusive: one rank computes at a time (start_compute waits for the others' compute to reach a
    /// communication call or account_compute), so each card's compute is measured as if it had the host's caches
    /// and DRAM bandwidth to itself, as a real card has its own memory; without it, ranks that compute at once on a
    /// host share its DRAM and each one's CPU time grows with the others' traffic. Wall time grows, the clocks do
    /// not. Deadlock-free as long as ranks wait for each other only in communication calls.
    /// A rank's work must end with account_compute() or release_compute() (run_on_ranks calls the latter when fn
    /// returns): every communication call ends by taking the exclusive right to compute again.
    void enable_compute_clock(bool exclusive = true);
    void start_compute();
    void account_compute();
    /// Gives up the exclusive right to compute without putting the time since the mark on the clock.
    void release_compute();

  private:
    void issue_group(const std::vector<Op>& sends, const std::vector<Op>& recvs) override;
    /// Compute clock: CPU seconds since the mark, put on this rank's clock (caller holds the world's lock).
    void account_compute_locked();
    void release_compute_locked();

    std::shared_ptr<LocalWorld> world_;
    int rank_;
    bool compute_clock_ = false;
    bool exclusive_compute_ = false;
    double compute_mark_s_ = 0;  // thread CPU time of the last mark
};

/// num_ranks communicators joined together; rank i is element i. links (optional) must describe
/// num_ranks cards.
std::vector<std::unique_ptr<LocalCommunicator>> make_local_communicators(int num_ranks,
                                                                         std::shared_ptr<LinkEmulation> links = {});

/// Runs fn(rank) on one thread per communicator and joins them. When a rank throws, the others are
/// aborted (so none waits for it forever) and the first rank's own error is rethrown here.
void run_on_ranks(const std::vector<std::unique_ptr<LocalCommunicator>>& comms, const std::function<void(int)>& fn);

/// Rethrows the error of the first rank that failed on its own (not CommunicatorAborted), else the
/// first error; returns when there is none. errors/aborted are per rank.
void rethrow_rank_error(const std::vector<std::exception_ptr>& errors, const std::vector<bool>& aborted);

}  // namespace moerig::runtime
