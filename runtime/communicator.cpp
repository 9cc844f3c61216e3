// The default all_to_all_v: one group of per-peer sends and receives over packed, peer-ordered buffers.
#include "runtime/communicator.h"

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

}  // namespace moerig::runtime
