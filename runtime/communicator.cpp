// The default all_to_all_v: one group of per-peer sends and receives over packed, peer-ordered buffers; and
// GroupedCommunicator's bookkeeping of groups.
#include "runtime/communicator.h"

#include <utility>
#include <vector>

#include "kernels/error.h"

namespace moerig::runtime {

void Communicator::all_to_all_v(const void* send_buf, std::span<const size_t> send_bytes, void* recv_buf,
                                std::span<const size_t> recv_bytes) {
    const int num_ranks = size();
    MOERIG_CHECK(static_cast<int>(send_bytes.size()) == num_ranks && static_cast<int>(recv_bytes.size()) == num_ranks,
                 ConfigError, "all_to_all_v on rank {}: expected {} send and receive counts, got {} and {}", rank(),
                 num_ranks, send_bytes.size(), recv_bytes.size());
    // Peers in rotated order (send to rank+i, receive from rank-i) as NCCL does, so that no card is
    // everyone's first destination; buffers stay packed in peer order.
    std::vector<size_t> send_offset(num_ranks + 1, 0), recv_offset(num_ranks + 1, 0);
    for (int p = 0; p < num_ranks; ++p) {
        send_offset[p + 1] = send_offset[p] + send_bytes[p];
        recv_offset[p + 1] = recv_offset[p] + recv_bytes[p];
    }
    const auto* send_at = static_cast<const std::byte*>(send_buf);
    auto* recv_at = static_cast<std::byte*>(recv_buf);
    const int me = rank();
    group_start();
    for (int i = 0; i < num_ranks; ++i) {
        const int peer = (me + i) % num_ranks;
        if (send_bytes[peer] != 0) send(send_at + send_offset[peer], send_bytes[peer], peer);
    }
    for (int i = 0; i < num_ranks; ++i) {
        const int peer = (me - i + num_ranks) % num_ranks;
        if (recv_bytes[peer] != 0) recv(recv_at + recv_offset[peer], recv_bytes[peer], peer);
    }
    group_end();
}

void GroupedCommunicator::check_peer(int peer, const char* what) const {
    MOERIG_CHECK(peer >= 0 && peer < size(), ConfigError, "{} on rank {}: peer {} is not a rank of this {}-card group",
                 what, rank(), peer, size());
}

void GroupedCommunicator::group_start() {
    ++group_depth_;
}

void GroupedCommunicator::group_end() {
    MOERIG_CHECK(group_depth_ > 0, ConfigError, "group_end on rank {} without group_start", rank());
    if (--group_depth_ > 0) return;
    const std::vector<Op> sends = std::exchange(sends_, {});
    const std::vector<Op> recvs = std::exchange(recvs_, {});
    issue_group(sends, recvs);
}

void GroupedCommunicator::send(const void* data, size_t num_bytes, int peer) {
    check_peer(peer, "send");
    sends_.push_back(Op{const_cast<void*>(data), num_bytes, peer});
    if (group_depth_ == 0) {
        group_start();
        group_end();
    }
}

void GroupedCommunicator::recv(void* data, size_t num_bytes, int peer) {
    check_peer(peer, "recv");
    recvs_.push_back(Op{data, num_bytes, peer});
    if (group_depth_ == 0) {
        group_start();
        group_end();
    }
}

void GroupedCommunicator::count_group(const std::vector<Op>& sends, const std::vector<Op>& recvs) {
    const int me = rank();
    for (const Op& s : sends) {
        if (s.peer == me) continue;
        stats_.bytes_sent += s.num_bytes;
        ++stats_.num_messages_sent;
    }
    for (const Op& r : recvs) {
        if (r.peer != me) stats_.bytes_received += r.num_bytes;
    }
    ++stats_.num_groups;
}

}  // namespace moerig::runtime
