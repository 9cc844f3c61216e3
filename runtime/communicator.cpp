// The default all_to_all_v: one group of per-peer sends and receives over packed, peer-ordered buffers.
#include "runtime/communicator.h"

#include "kernels/error.h"

namespace moerig::runtime {

void Communicator::all_to_all_v(const void* send_buf, std::span<const size_t> send_bytes, void* recv_buf,
                                std::span<const size_t> recv_bytes) {
    const int num_ranks = size();
    MOERIG_CHECK(static_cast<int>(send_bytes.size()) == num_ranks && static_cast<int>(recv_bytes.size()) == num_ranks,
                 ConfigError, "all_to_all_v on rank {}: expected {} send and receive counts, got {} and {}", rank(),
                 num_ranks, send_bytes.size(), recv_bytes.size());
    const auto* send_at = static_cast<const std::byte*>(send_buf);
    auto* recv_at = static_cast<std::byte*>(recv_buf);
    group_start();
    for (int peer = 0; peer < num_ranks; ++peer) {
        if (send_bytes[peer] != 0) send(send_at, send_bytes[peer], peer);
        send_at += send_bytes[peer];
    }
    for (int peer = 0; peer < num_ranks; ++peer) {
        if (recv_bytes[peer] != 0) recv(recv_at, recv_bytes[peer], peer);
        recv_at += recv_bytes[peer];
    }
    group_end();
}

}  // namespace moerig::runtime
