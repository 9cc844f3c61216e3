// Communicator for virtual cards on one GPU (or cards of one process with peer access): every message is a
// cudaMemcpyAsync from the sender's buffer into the receiver's, issued on the receiver's stream. NCCL allows one
// rank per GPU, so this is what joins the CudaDevices of make_virtual_cards; the dispatcher runs on it unchanged.
//
// Ordering is stream-ordered, as NCCL: at group_end a rank records an event on its stream after the work that
// filled its send buffers and posts the messages; a receiver makes its stream wait for that event, enqueues the
// copies and records its own event, which the sender's stream then waits for before it may overwrite the send
// buffers. Host threads only wait for each other to post and take messages (not for the GPU), so a whole
// exchange is queued without a device synchronisation. With host_sync, group_end also waits for the copies to
// finish (host-synchronous, as LocalCommunicator), for callers that read received bytes on the host; the copies
// then use cudaMemcpyDefault, so host, managed and device buffers may all be passed.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <span>
#include <vector>

#include "runtime/communicator.h"
#include "runtime/cuda/cuda_device.h"

namespace moerig::runtime::cuda {

class DeviceCopyWorld;

class DeviceCopyCommunicator final : public GroupedCommunicator {
  public:
    DeviceCopyCommunicator(std::shared_ptr<DeviceCopyWorld> world, int rank);
    ~DeviceCopyCommunicator() override;
    DeviceCopyCommunicator(const DeviceCopyCommunicator&) = delete;
    DeviceCopyCommunicator& operator=(const DeviceCopyCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override;
    /// Waits for this rank's queued work, then for every rank to enter barrier().
    void barrier() override;
    /// Waits until this rank's stream (and so its received copies) is done.
    void synchronize() override;
    /// Fails every rank's pending and future calls (a rank thread that hit an error calls it so that its peers
    /// do not wait for it forever).
    void abort(const std::string& reason);

    CudaDevice& device() const;

  private:
    void issue_group(const std::vector<Op>& sends, const std::vector<Op>& recvs) override;

    std::shared_ptr<DeviceCopyWorld> world_;
    int rank_;
    cudaEvent_t ready_ = nullptr;  // recorded after the work that fills this rank's send buffers
    cudaEvent_t done_ = nullptr;   // recorded after this rank's received copies
};

/// One communicator per device (rank i uses devices[i]'s stream), each to be driven by its own thread.
/// host_sync: group_end returns only when the copies have completed (see the file comment).
std::vector<std::unique_ptr<DeviceCopyCommunicator>> make_device_copy_communicators(
    std::span<CudaDevice* const> devices, bool host_sync = false);

}  // namespace moerig::runtime::cuda
