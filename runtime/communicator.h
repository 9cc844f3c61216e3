// How cards exchange data: grouped point-to-point send/recv in NCCL's model (group_start; per-peer
// send/recv; group_end), the all_to_all_v the dispatcher is built on, and barrier. One Communicator
// object per rank (card); LocalCommunicator joins virtual cards in one process, the NCCL one real GPUs.
// GroupedCommunicator is the grouping and peer checks shared by the communicators that issue whole groups
// themselves (LocalCommunicator, DeviceCopyCommunicator).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace moerig::runtime {

/// Traffic counted by a communicator for its rank. Self-sends count as neither sent nor received.
struct CommStats {
    size_t bytes_sent = 0;
    size_t bytes_received = 0;
    size_t num_messages_sent = 0;
    size_t num_groups = 0;  ///< completed groups (a lone send/recv is a group of one)
    double modelled_s = 0;  ///< modelled link time on this rank's critical path (0 without emulation)
    double wait_s = 0;      ///< wall time spent inside communication calls (waiting for peers included)
    double compute_s = 0;   ///< compute clock only: this rank's thread CPU seconds put on its virtual clock
};

/// One rank's end of a communicator. Buffers are device pointers of the rank's device.
///
/// Semantics follow NCCL's grouped point-to-point calls: between group_start() and group_end() any
/// number of send()/recv() calls are recorded; group_end() issues them together, so the order of sends
/// and receives inside a group cannot deadlock. Messages between one ordered pair of ranks match in
/// issue order, and each recv must name the same byte count as the matching send. A send or recv
/// outside a group is a group of one. Completion: for host-synchronous communicators (LocalCommunicator)
/// everything is complete when group_end() returns; stream-ordered ones (NCCL) complete on the device
/// stream, and synchronize() waits for them. Calls of one rank must come from one thread at a time.
class Communicator {
  public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;

    virtual void group_start() = 0;
    virtual void group_end() = 0;
    /// Sends num_bytes at data to peer (peer == rank() is allowed: a local copy).
    virtual void send(const void* data, size_t num_bytes, int peer) = 0;
    /// Receives num_bytes from peer into data.
    virtual void recv(void* data, size_t num_bytes, int peer) = 0;

    /// Waits until every rank has entered barrier().
    virtual void barrier() = 0;
    /// Waits until issued communication of this rank is complete (no-op for host-synchronous ones).
    virtual void synchronize() {}

    virtual CommStats stats() const = 0;

    /// Variable all-to-all: send_bytes[p] bytes for peer p are packed contiguously in send_buf, in peer
    /// order; recv_bytes[p] bytes from peer p land contiguously in recv_buf, in peer order. Zero counts
    /// send nothing. Both spans have size() entries and must agree pairwise across ranks
    /// (send_bytes[q] on rank p == recv_bytes[p] on rank q). Default: one group of sends and receives.
    virtual void all_to_all_v(const void* send_buf, std::span<const size_t> send_bytes, void* recv_buf,
                              std::span<const size_t> recv_bytes);
};

/// A communicator that issues whole groups itself: group_start/group_end nest, send/recv check the peer and
/// record the call (a lone one is a group of one), and the outermost group_end hands the group to issue_group.
class GroupedCommunicator : public Communicator {
  public:
    void group_start() final;
    void group_end() final;
    void send(const void* data, size_t num_bytes, int peer) final;
    void recv(void* data, size_t num_bytes, int peer) final;
    CommStats stats() const override { return stats_; }

  protected:
    /// One recorded send or recv.
    struct Op {
        void* data;
        size_t num_bytes;
        int peer;
    };
    /// Issues one completed group: its sends and its receives, each in the order they were called.
    virtual void issue_group(const std::vector<Op>& sends, const std::vector<Op>& recvs) = 0;
    /// Counts an issued group's traffic in stats_ (self-sends count as neither sent nor received).
    void count_group(const std::vector<Op>& sends, const std::vector<Op>& recvs);
    /// Drops a group left open by an error (its recorded sends and receives are never issued).
    void forget_group() {
        group_depth_ = 0;
        sends_.clear();
        recvs_.clear();
    }

    CommStats stats_;

  private:
    void check_peer(int peer, const char* what) const;

    int group_depth_ = 0;
    std::vector<Op> sends_;
    std::vector<Op> recvs_;
};

}  // namespace moerig::runtime
