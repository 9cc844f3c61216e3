// Virtual cards: every allocation is charged to the card's budget by kind, released exactly once, and
// a request over budget is refused with an OutOfMemoryError that names the card, the request and what
// is held, before anything is allocated.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/error.h"
#include "runtime/cpu_device.h"

using moerig::OutOfMemoryError;
using moerig::runtime::Buffer;
using moerig::runtime::CpuDevice;
using moerig::runtime::MemoryKind;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
}

TEST(Device, ChargesEachAllocationToItsKindAndReleasesItOnDestruction) {
    CpuDevice card("card0", 10 * kMiB);
    {
        Buffer w = card.alloc(3 * kMiB, MemoryKind::kWeights);
        Buffer kv = card.alloc(2 * kMiB, MemoryKind::kKv);
        Buffer comm = card.alloc(100, MemoryKind::kComm);
        auto info = card.memory_info();
        EXPECT_EQ(info.used_bytes, 5 * kMiB + 100);
        EXPECT_EQ(info.held(MemoryKind::kWeights), 3 * kMiB);
        EXPECT_EQ(info.held(MemoryKind::kKv), 2 * kMiB);
        EXPECT_EQ(info.held(MemoryKind::kComm), 100u);
        EXPECT_EQ(info.held(MemoryKind::kActivations), 0u);
        EXPECT_EQ(info.free_bytes(), 5 * kMiB - 100);
        kv.reset();
        EXPECT_EQ(card.memory_info().held(MemoryKind::kKv), 0u);
    }
    auto info = card.memory_info();
    EXPECT_EQ(info.used_bytes, 0u);
    EXPECT_EQ(info.peak_bytes, 5 * kMiB + 100);
}

TEST(Device, RefusesARequestOverBudgetNamingCardRequestAndHeldBytesByKind) {
    CpuDevice card("riser-card3", 4 * kMiB);
    Buffer w = card.alloc(3 * kMiB, MemoryKind::kWeights);
    try {
        (void)card.alloc(2 * kMiB, MemoryKind::kKv);
        FAIL() << "expected OutOfMemoryError";
    } catch (const OutOfMemoryError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("riser-card3"), std::string::npos) << msg;
        EXPECT_NE(msg.find("2.0 MiB"), std::string::npos) << msg;
        EXPECT_NE(msg.find("for kv"), std::string::npos) << msg;
        EXPECT_NE(msg.find("weights 3.0 MiB"), std::string::npos) << msg;
        EXPECT_NE(msg.find("4.0 MiB budget"), std::string::npos) << msg;
    }
    // A refused request charges nothing: exactly the remaining megabyte still fits.
    EXPECT_EQ(card.memory_info().used_bytes, 3 * kMiB);
    Buffer rest = card.alloc(1 * kMiB, MemoryKind::kActivations);
    EXPECT_EQ(card.memory_info().free_bytes(), 0u);
    EXPECT_THROW((void)card.alloc(1, MemoryKind::kComm), OutOfMemoryError);
}

TEST(Device, MovedBufferIsReleasedOnceByItsLastOwner) {
    CpuDevice card("card0", kMiB);
    Buffer a = card.alloc(1000, MemoryKind::kActivations);
    Buffer b = std::move(a);
    EXPECT_FALSE(a);
    EXPECT_EQ(card.memory_info().used_bytes, 1000u);
    Buffer c = card.alloc(24, MemoryKind::kActivations);
    c = std::move(b);  // c's old 24 bytes are freed, b's 1000 move in
    EXPECT_EQ(card.memory_info().used_bytes, 1000u);
    c.reset();
    EXPECT_EQ(card.memory_info().used_bytes, 0u);
}

TEST(Device, CopiesRoundTripThroughDeviceMemory) {
    CpuDevice card("card0", kMiB);
    std::vector<int> src(1000), back(1000, -1);
    std::iota(src.begin(), src.end(), 7);
    Buffer a = card.alloc(src.size() * sizeof(int), MemoryKind::kActivations);
    Buffer b = card.alloc(src.size() * sizeof(int), MemoryKind::kActivations);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % CpuDevice::kAlignment, 0u);
    card.copy_to_device_async(a.data(), src.data(), a.num_bytes());
    card.copy_on_device(b.data(), a.data(), a.num_bytes());
    card.copy_to_host(back.data(), b.data(), b.num_bytes());
    card.synchronize();
    EXPECT_EQ(back, src);
}
