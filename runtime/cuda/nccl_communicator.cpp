// NcclCommunicator: NCCL group semantics map one to one onto the Communicator interface; byte counts travel
// as ncclUint8 so any layout can be exchanged, and self-sends are matched to self-receives in issue order.
#include "runtime/cuda/nccl_communicator.h"

#include "kernels/cuda/check.h"
#include "kernels/error.h"

#define MOERIG_NCCL_CHECK(call)                                                                                    \
    do {                                                                                                           \
        const ncclResult_t res_ = (call);                                                                          \
        MOERIG_CHECK(res_ == ncclSuccess, ::moerig::NcclError, "NCCL error {} ({}) in {}", static_cast<int>(res_), \
                     ncclGetErrorString(res_), #call);                                                             \
    } while (0)

namespace moerig::runtime::cuda {

std::vector<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create_local(std::span<CudaDevice* const> devices) {
    MOERIG_CHECK(!devices.empty(), ConfigError, "NCCL: create_local needs at least one device");
    std::vector<int> gpus;
    for (CudaDevice* d : devices) {
        for (int g : gpus) {
            MOERIG_CHECK(g != d->gpu_idx(), ConfigError,
                         "NCCL: two ranks on GPU {} ('{}'); NCCL allows one rank per GPU, use virtual cards with "
                         "LocalCommunicator instead",
                         g, d->name());
        }
        gpus.push_back(d->gpu_idx());
    }
    std::vector<ncclComm_t> comms(devices.size());
    MOERIG_NCCL_CHECK(ncclCommInitAll(comms.data(), static_cast<int>(comms.size()), gpus.data()));
    std::vector<std::unique_ptr<NcclCommunicator>> out;
    for (size_t i = 0; i < devices.size(); ++i) {
        out.push_back(std::unique_ptr<NcclCommunicator>(
            new NcclCommunicator(*devices[i], comms[i], static_cast<int>(i), static_cast<int>(devices.size()))));
    }
    return out;
}

ncclUniqueId NcclCommunicator::make_unique_id() {
    ncclUniqueId id;
    MOERIG_NCCL_CHECK(ncclGetUniqueId(&id));
    return id;
}

NcclCommunicator::NcclCommunicator(CudaDevice& device, int rank, int size, const ncclUniqueId& id)
    : device_(&device), rank_(rank), size_(size) {
    MOERIG_CHECK(size >= 1 && rank >= 0 && rank < size, ConfigError, "NCCL: rank {} of {} is not a valid rank", rank,
                 size);
    device.make_current();
    MOERIG_NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
    MOERIG_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(float)));
}

NcclCommunicator::NcclCommunicator(CudaDevice& device, ncclComm_t comm, int rank, int size)
    : device_(&device), comm_(comm), rank_(rank), size_(size) {
    device.make_current();
    MOERIG_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(float)));
}

NcclCommunicator::~NcclCommunicator() {
    cudaSetDevice(device_->gpu_idx());
    cudaStreamSynchronize(device_->stream());
    if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
    if (comm_ != nullptr) ncclCommDestroy(comm_);
}

void NcclCommunicator::check_peer(int peer, const char* what) const {
    MOERIG_CHECK(peer >= 0 && peer < size_, ConfigError,
                 "NCCL rank {}: {} to peer {} but the communicator has {} ranks", rank_, what, peer, size_);
}

void NcclCommunicator::group_start() {
    if (group_depth_++ == 0) MOERIG_NCCL_CHECK(ncclGroupStart());
}

void NcclCommunicator::group_end() {
    MOERIG_CHECK(group_depth_ > 0, Error, "NCCL rank {}: group_end without group_start", rank_);
    if (--group_depth_ == 0) {
        device_->make_current();
        MOERIG_NCCL_CHECK(ncclGroupEnd());
        match_self_copies();
        ++stats_.num_groups;
    }
}

void NcclCommunicator::send(const void* data, size_t num_bytes, int peer) {
    check_peer(peer, "send");
    if (peer == rank_) {
        self_sends_.push_back({const_cast<void*>(data), num_bytes});
        if (group_depth_ == 0) {
            match_self_copies();
            ++stats_.num_groups;
        }
        return;
    }
    group_start();
    device_->make_current();
    MOERIG_NCCL_CHECK(ncclSend(data, num_bytes, ncclUint8, peer, comm_, device_->stream()));
    group_end();
    stats_.bytes_sent += num_bytes;
    ++stats_.num_messages_sent;
}

void NcclCommunicator::recv(void* data, size_t num_bytes, int peer) {
    check_peer(peer, "recv");
    if (peer == rank_) {
        self_recvs_.push_back({data, num_bytes});
        if (group_depth_ == 0) {
            match_self_copies();
            ++stats_.num_groups;
        }
        return;
    }
    group_start();
    device_->make_current();
    MOERIG_NCCL_CHECK(ncclRecv(data, num_bytes, ncclUint8, peer, comm_, device_->stream()));
    group_end();
    stats_.bytes_received += num_bytes;
}

void NcclCommunicator::match_self_copies() {
    while (!self_sends_.empty() && !self_recvs_.empty()) {
        const SelfOp s = self_sends_.front();
        const SelfOp r = self_recvs_.front();
        self_sends_.pop_front();
        self_recvs_.pop_front();
        MOERIG_CHECK(s.num_bytes == r.num_bytes, ConfigError,
                     "NCCL rank {}: self-send of {} bytes matched with a receive of {} bytes", rank_, s.num_bytes,
                     r.num_bytes);
        if (s.num_bytes != 0 && s.data != r.data) {
            device_->make_current();
            MOERIG_CUDA_CHECK(
                cudaMemcpyAsync(r.data, s.data, s.num_bytes, cudaMemcpyDeviceToDevice, device_->stream()));
        }
    }
}

void NcclCommunicator::barrier() {
    device_->make_current();
    if (size_ > 1) {
        MOERIG_NCCL_CHECK(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, comm_, device_->stream()));
    }
    MOERIG_CUDA_CHECK(cudaStreamSynchronize(device_->stream()));
}

void NcclCommunicator::synchronize() {
    device_->make_current();
    MOERIG_CUDA_CHECK(cudaStreamSynchronize(device_->stream()));
}

}  // namespace moerig::runtime::cuda
