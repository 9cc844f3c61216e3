// DeviceCopyCommunicator: mailboxes per ordered rank pair under one mutex (as LocalCommunicator), but the payload
// moves on the GPU: the receiver's stream waits for the sender's "ready" event and copies; the sender's stream
// waits for the receiver's "done" event before anything may overwrite the send buffer.
#include "runtime/cuda/device_copy_communicator.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/error.h"
#include "runtime/local_communicator.h"

namespace moerig::runtime::cuda {

/// State shared by the ranks of one device-copy communicator.
class DeviceCopyWorld {
  public:
    struct Posted {
        const void* data = nullptr;
        size_t num_bytes = 0;
        cudaEvent_t ready = nullptr;  // the sender's event; its stream has filled data before it
        cudaEvent_t done = nullptr;   // the receiver's event after the copy (nullptr: complete on the host)
        bool popped = false;
        bool taken = false;
    };

    DeviceCopyWorld(std::vector<CudaDevice*> devices, bool host_sync)
        : devices_(std::move(devices)), host_sync_(host_sync), mailboxes_(devices_.size() * devices_.size()) {}

    int num_ranks() const { return static_cast<int>(devices_.size()); }

    std::vector<CudaDevice*> devices_;
    bool host_sync_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::deque<Posted*>> mailboxes_;  // [src * n + dst], in issue order
    bool aborted_ = false;
    std::string abort_reason_;
    int barrier_count_ = 0;
    uint64_t barrier_generation_ = 0;

    void throw_if_aborted(int rank) const {
        if (aborted_)
            MOERIG_THROW(CommunicatorAborted, "device-copy communicator rank {}: aborted ({})", rank, abort_reason_);
    }
    void abort_locked(const std::string& reason) {
        if (!aborted_) {
            aborted_ = true;
            abort_reason_ = reason;
        }
        cv_.notify_all();
    }
};

namespace {

bool on_device(const void* p) {
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

}  // namespace

DeviceCopyCommunicator::DeviceCopyCommunicator(std::shared_ptr<DeviceCopyWorld> world, int rank)
    : world_(std::move(world)), rank_(rank) {
    MOERIG_CHECK(rank >= 0 && rank < world_->num_ranks(), ConfigError,
                 "device-copy communicator: rank {} of {} is not a valid rank", rank, world_->num_ranks());
    device().make_current();
    MOERIG_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    MOERIG_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
}

DeviceCopyCommunicator::~DeviceCopyCommunicator() {
    cudaSetDevice(device().gpu_idx());
    cudaStreamSynchronize(device().stream());
    if (ready_ != nullptr) cudaEventDestroy(ready_);
    if (done_ != nullptr) cudaEventDestroy(done_);
}

int DeviceCopyCommunicator::size() const {
    return world_->num_ranks();
}

CudaDevice& DeviceCopyCommunicator::device() const {
    return *world_->devices_[static_cast<size_t>(rank_)];
}

void DeviceCopyCommunicator::abort(const std::string& reason) {
    std::lock_guard lock(world_->mutex_);
    world_->abort_locked(reason);
}

void DeviceCopyCommunicator::issue_group(const std::vector<Op>& sends, const std::vector<Op>& recvs) {
    const auto wall_start = std::chrono::steady_clock::now();
    DeviceCopyWorld& w = *world_;
    const int n = w.num_ranks();
    CudaDevice& dev = device();
    const cudaStream_t stream = dev.stream();
    dev.make_current();
    if (!sends.empty()) MOERIG_CUDA_CHECK(cudaEventRecord(ready_, stream));

    std::vector<DeviceCopyWorld::Posted> posted(sends.size());
    std::vector<DeviceCopyWorld::Posted*> popped;
    std::unique_lock lock(w.mutex_);
    w.throw_if_aborted(rank_);
    for (size_t i = 0; i < sends.size(); ++i) {
        posted[i].data = sends[i].data;
        posted[i].num_bytes = sends[i].num_bytes;
        posted[i].ready = ready_;
        w.mailboxes_[static_cast<size_t>(rank_ * n + sends[i].peer)].push_back(&posted[i]);
    }
    w.cv_.notify_all();

    bool copy_error = false;
    std::string copy_error_text, mismatch;
    for (const Op& r : recvs) {
        auto& box = w.mailboxes_[static_cast<size_t>(r.peer * n + rank_)];
        w.cv_.wait(lock, [&] { return w.aborted_ || !box.empty(); });
        if (w.aborted_) break;
        DeviceCopyWorld::Posted* p = box.front();
        box.pop_front();
        p->popped = true;
        popped.push_back(p);
        if (p->num_bytes != r.num_bytes) {
            mismatch = fmt::format("rank {} expected {} bytes from rank {}, which sent {}", rank_, r.num_bytes, r.peer,
                                   p->num_bytes);
            w.abort_locked(mismatch);
            break;
        }
        lock.unlock();
        if (r.num_bytes != 0 && r.data != p->data) {
            cudaError_t err = cudaStreamWaitEvent(stream, p->ready, 0);
            if (err == cudaSuccess) {
                CudaDevice& src_dev = *w.devices_[static_cast<size_t>(r.peer)];
                if (w.host_sync_) {
                    if (on_device(r.data) || on_device(p->data)) {
                        err = cudaMemcpyAsync(r.data, p->data, r.num_bytes, cudaMemcpyDefault, stream);
                    } else {
                        std::memcpy(r.data, p->data, r.num_bytes);
                    }
                } else if (src_dev.gpu_idx() == dev.gpu_idx()) {
                    err = cudaMemcpyAsync(r.data, p->data, r.num_bytes, cudaMemcpyDeviceToDevice, stream);
                } else {
                    err = cudaMemcpyPeerAsync(r.data, dev.gpu_idx(), p->data, src_dev.gpu_idx(), r.num_bytes, stream);
                }
            }
            if (err != cudaSuccess && !copy_error) {
                copy_error = true;
                copy_error_text = fmt::format("rank {}: copy of {} bytes from rank {} failed: {}", rank_, r.num_bytes,
                                              r.peer, cudaGetErrorString(err));
            }
        }
        lock.lock();
    }
    lock.unlock();
    cudaEvent_t done = nullptr;
    if (!popped.empty() && !copy_error) {
        cudaError_t err = cudaEventRecord(done_, stream);
        if (err == cudaSuccess && w.host_sync_) err = cudaStreamSynchronize(stream);
        if (err != cudaSuccess) {
            copy_error = true;
            copy_error_text =
                fmt::format("rank {}: completing received copies failed: {}", rank_, cudaGetErrorString(err));
        }
        done = w.host_sync_ ? nullptr : done_;
    }
    lock.lock();
    for (auto* p : popped) {
        p->done = done;
        p->taken = true;
    }
    w.cv_.notify_all();
    if (copy_error) w.abort_locked(copy_error_text);

    // The send buffers must stay valid until every receiver has queued (host_sync: finished) its copy.
    w.cv_.wait(lock, [&] {
        return w.aborted_ || std::all_of(posted.begin(), posted.end(), [](const auto& p) { return p.taken; });
    });
    if (w.aborted_) {
        // Peers may still point at posted[]: withdraw what was not taken before it goes out of scope.
        for (int dst = 0; dst < n; ++dst) {
            auto& box = w.mailboxes_[static_cast<size_t>(rank_ * n + dst)];
            box.erase(std::remove_if(box.begin(), box.end(),
                                     [&](DeviceCopyWorld::Posted* p) {
                                         return p >= posted.data() && p < posted.data() + posted.size();
                                     }),
                      box.end());
        }
        w.cv_.wait(lock, [&] {
            return std::all_of(posted.begin(), posted.end(), [](const auto& p) { return !p.popped || p.taken; });
        });
        lock.unlock();
        // Copies already queued may still read the send buffers: let them finish before returning.
        cudaStreamSynchronize(stream);
        for (const auto& p : posted) {
            if (p.done != nullptr) cudaEventSynchronize(p.done);
        }
        if (!mismatch.empty()) MOERIG_THROW(ConfigError, "device-copy communicator: {}", mismatch);
        if (copy_error) MOERIG_THROW(CudaError, "device-copy communicator: {}", copy_error_text);
        std::lock_guard relock(w.mutex_);
        w.throw_if_aborted(rank_);
    }
    if (lock.owns_lock()) lock.unlock();

    // Nothing queued after this on our stream may overwrite a send buffer before the receivers' copies ran.
    std::vector<cudaEvent_t> waited;
    for (const auto& p : posted) {
        if (p.done == nullptr || std::find(waited.begin(), waited.end(), p.done) != waited.end()) continue;
        waited.push_back(p.done);
        MOERIG_CUDA_CHECK(cudaStreamWaitEvent(stream, p.done, 0));
    }

    count_group(sends, recvs);
    stats_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
}

void DeviceCopyCommunicator::barrier() {
    synchronize();
    DeviceCopyWorld& w = *world_;
    std::unique_lock lock(w.mutex_);
    w.throw_if_aborted(rank_);
    const uint64_t generation = w.barrier_generation_;
    if (++w.barrier_count_ == w.num_ranks()) {
        w.barrier_count_ = 0;
        ++w.barrier_generation_;
        w.cv_.notify_all();
        return;
    }
    w.cv_.wait(lock, [&] { return w.aborted_ || w.barrier_generation_ != generation; });
    w.throw_if_aborted(rank_);
}

void DeviceCopyCommunicator::synchronize() {
    device().synchronize();
}

std::vector<std::unique_ptr<DeviceCopyCommunicator>> make_device_copy_communicators(
    std::span<CudaDevice* const> devices, bool host_sync) {
    MOERIG_CHECK(!devices.empty(), ConfigError, "device-copy communicator: needs at least one device");
    auto world = std::make_shared<DeviceCopyWorld>(std::vector<CudaDevice*>(devices.begin(), devices.end()), host_sync);
    std::vector<std::unique_ptr<DeviceCopyCommunicator>> out;
    for (int r = 0; r < static_cast<int>(devices.size()); ++r) {
        out.push_back(std::make_unique<DeviceCopyCommunicator>(world, r));
    }
    return out;
}

}  // namespace moerig::runtime::cuda
