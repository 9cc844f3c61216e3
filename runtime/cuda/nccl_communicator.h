// Communicator over NCCL for real GPUs: grouped ncclSend/ncclRecv ordered on each card's stream. One process
// drives all local GPUs (create_local, ncclCommInitAll); across hosts each rank joins with an ncclUniqueId
// that the control plane hands out. Sends to self are stream-ordered device copies.
#pragma once

#include <nccl.h>

#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "runtime/communicator.h"
#include "runtime/cuda/cuda_device.h"

namespace moerig::runtime::cuda {

class NcclCommunicator final : public Communicator {
  public:
    /// One rank per device, all in this process; devices must be distinct GPUs (NCCL allows one rank per GPU).
    /// Rank i uses devices[i]'s stream. Each rank is then driven by its own thread (as LocalCommunicator).
    static std::vector<std::unique_ptr<NcclCommunicator>> create_local(std::span<CudaDevice* const> devices);
    /// A fresh id for a multi-host communicator (rank 0 makes it; the control plane sends it to the others).
    static ncclUniqueId make_unique_id();
    /// Rank `rank` of `size` on device, joining the communicator identified by id (blocks until all joined).
    NcclCommunicator(CudaDevice& device, int rank, int size, const ncclUniqueId& id);
    ~NcclCommunicator() override;
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void group_start() override;
    void group_end() override;
    void send(const void* data, size_t num_bytes, int peer) override;
    void recv(void* data, size_t num_bytes, int peer) override;
    void barrier() override;
    void synchronize() override;
    CommStats stats() const override { return stats_; }

    ncclComm_t native() const { return comm_; }

  private:
    NcclCommunicator(CudaDevice& device, ncclComm_t comm, int rank, int size);
    void check_peer(int peer, const char* what) const;
    void match_self_copies();

    struct SelfOp {
        void* data;
        size_t num_bytes;
    };

    CudaDevice* device_;
    ncclComm_t comm_ = nullptr;
    int rank_;
    int size_;
    int group_depth_ = 0;
    std::deque<SelfOp> self_sends_;
    std::deque<SelfOp> self_recvs_;
    float* barrier_buf_ = nullptr;  // one float on the device for the barrier's all-reduce
    CommStats stats_;
};

}  // namespace moerig::runtime::cuda
