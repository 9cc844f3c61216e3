// LocalCommunicator: all_to_all_v delivers every peer's block in rank order (zero counts included),
// grouped send/recv cannot deadlock whatever the order, pairs match in issue order, a size mismatch
// fails every rank instead of hanging, and link emulation models time exactly from byte counts.
#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <vector>

#include "kernels/error.h"
#include "runtime/link_emulation.h"
#include "runtime/local_communicator.h"

using namespace moerig::runtime;

namespace {

// Rank p sends count(p, q) ints to rank q; zero when q == p + 1 (mod n), so every rank has an empty
// send and an empty receive. Values encode (sender, receiver, position) so misplacement is visible.
size_t count(int p, int q, int n) {
    return q == (p + 1) % n ? 0 : static_cast<size_t>(1 + p * 3 + q);
}
int value(int p, int q, size_t i) {
    return p * 1000000 + q * 1000 + static_cast<int>(i);
}

void all_to_all_round(Communicator& comm) {
    const int n = comm.size(), me = comm.rank();
    std::vector<int> send;
    std::vector<size_t> send_bytes(n), recv_bytes(n);
    for (int q = 0; q < n; ++q) {
        for (size_t i = 0; i < count(me, q, n); ++i) send.push_back(value(me, q, i));
        send_bytes[q] = count(me, q, n) * sizeof(int);
        recv_bytes[q] = count(q, me, n) * sizeof(int);
    }
    std::vector<int> recv(std::accumulate(recv_bytes.begin(), recv_bytes.end(), size_t{0}) / sizeof(int), -1);
    comm.all_to_all_v(send.data(), send_bytes, recv.data(), recv_bytes);
    std::vector<int> expected;
    for (int p = 0; p < n; ++p)
        for (size_t i = 0; i < count(p, me, n); ++i) expected.push_back(value(p, me, i));
    EXPECT_EQ(recv, expected) << "rank " << me;
}

}  // namespace

TEST(LocalCommunicator, AllToAllVDeliversEveryPeersBlockInRankOrderIncludingEmptyOnes) {
    for (int n : {1, 2, 3, 8}) {
        auto comms = make_local_communicators(n);
        run_on_ranks(comms, [&](int r) {
            all_to_all_round(*comms[r]);
            all_to_all_round(*comms[r]);  // reuse: nothing left over from the first round
        });
    }
}

TEST(LocalCommunicator, GroupedReceivesBeforeSendsDoNotDeadlock) {
    const int n = 5;
    auto comms = make_local_communicators(n);
    std::vector<int> got(n, -1);
    run_on_ranks(comms, [&](int r) {
        Communicator& c = *comms[r];
        int out = 100 + r, in = -1;
        c.group_start();
        c.recv(&in, sizeof in, (r + n - 1) % n);  // every rank receives first
        c.send(&out, sizeof out, (r + 1) % n);
        c.group_end();
        got[r] = in;
    });
    for (int r = 0; r < n; ++r) EXPECT_EQ(got[r], 100 + (r + n - 1) % n);
}

TEST(LocalCommunicator, MessagesBetweenOnePairMatchInIssueOrder) {
    auto comms = make_local_communicators(2);
    std::vector<int> got(3, -1);
    run_on_ranks(comms, [&](int r) {
        if (r == 0) {
            int a = 1, b = 2, c = 3;
            comms[0]->group_start();
            comms[0]->send(&a, sizeof a, 1);
            comms[0]->send(&b, sizeof b, 1);
            comms[0]->group_end();
            comms[0]->send(&c, sizeof c, 1);  // a lone send is a group of one
        } else {
            comms[1]->group_start();
            for (int i = 0; i < 2; ++i) comms[1]->recv(&got[i], sizeof(int), 0);
            comms[1]->group_end();
            comms[1]->recv(&got[2], sizeof(int), 0);
        }
    });
    EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
}

TEST(LocalCommunicator, SizeMismatchFailsEveryRankInsteadOfHanging) {
    auto comms = make_local_communicators(3);
    try {
        run_on_ranks(comms, [&](int r) {
            std::vector<char> buf(16);
            if (r == 0) comms[0]->send(buf.data(), 16, 1);
            if (r == 1) comms[1]->recv(buf.data(), 8, 0);
            if (r == 2) comms[2]->barrier();  // waits for ranks that never come: must be released
        });
        FAIL() << "expected the mismatch to raise";
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("expected 8 bytes from rank 0, which sent 16"), std::string::npos)
            << e.what();
    }
}

TEST(LocalCommunicator, CountsOnlyBytesThatLeaveTheCard) {
    const int n = 3;
    auto comms = make_local_communicators(n);
    run_on_ranks(comms, [&](int r) { all_to_all_round(*comms[r]); });
    for (int r = 0; r < n; ++r) {
        size_t sent = 0, received = 0;
        for (int q = 0; q < n; ++q) {
            if (q == r) continue;
            sent += count(r, q, n) * sizeof(int);
            received += count(q, r, n) * sizeof(int);
        }
        const CommStats s = comms[r]->stats();
        EXPECT_EQ(s.bytes_sent, sent);
        EXPECT_EQ(s.bytes_received, received);
        EXPECT_EQ(s.num_groups, 1u);
        EXPECT_EQ(s.modelled_s, 0.0);
    }
}

TEST(LinkEmulation, LinkRateIsLanesTimesPerLaneRate) {
    EXPECT_DOUBLE_EQ((LinkSpec{.pcie_gen = 1, .lanes = 1}).bytes_per_s(), 0.25e9);
    EXPECT_DOUBLE_EQ((LinkSpec{.pcie_gen = 3, .lanes = 4}).bytes_per_s(), 4 * 0.985e9);
    EXPECT_DOUBLE_EQ((LinkSpec{.pcie_gen = 4, .lanes = 16}).bytes_per_s(), 16 * 1.97e9);
    EXPECT_THROW((LinkSpec{.pcie_gen = 7, .lanes = 1}).bytes_per_s(), moerig::ConfigError);
}

TEST(LinkEmulation, StagedMessageCrossesBothLinksAndDirectOneGoesAtTheSlowerLinksPace) {
    const size_t bytes = 1 << 20;
    const LinkSpec x1{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 5e-6};
    const LinkSpec x4{.pcie_gen = 3, .lanes = 4, .p2p = false, .latency_s = 5e-6};
    for (bool p2p : {false, true}) {
        LinkSpec a = x1, b = x4;
        a.p2p = b.p2p = p2p;
        auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>{a, b});
        auto comms = make_local_communicators(2, links);
        std::vector<char> out(bytes, 1), in(bytes);
        run_on_ranks(comms, [&](int r) {
            if (r == 0) comms[0]->send(out.data(), bytes, 1);
            if (r == 1) comms[1]->recv(in.data(), bytes, 0);
        });
        const double up = bytes / a.bytes_per_s(), down = bytes / b.bytes_per_s();
        // Staged in 128 KiB chunks: the faster receiver link takes each chunk as soon as it is in host
        // memory, so only the last chunk's second crossing adds to the sender's time.
        const double last_chunk_down = LinkEmulation::kDefaultStageChunkBytes / b.bytes_per_s();
        const double expected = (p2p ? std::max(up, down) : up + last_chunk_down) + b.latency_s;
        EXPECT_DOUBLE_EQ(links->message_s(0, 1, bytes), expected);
        EXPECT_DOUBLE_EQ(comms[1]->stats().modelled_s, expected) << "p2p " << p2p;
        EXPECT_DOUBLE_EQ(comms[0]->stats().modelled_s, up);  // the sender is done once its bytes left
        EXPECT_DOUBLE_EQ(links->up_busy_s(0), up);
        EXPECT_DOUBLE_EQ(links->down_busy_s(1), down);
    }
}

TEST(LinkEmulation, AllToAllOnSharedLinksSerialisesEachCardsUplinkAndDownlink) {
    // Four staged cards on identical links, each sending B bytes to each peer (self excluded from the
    // links); each sender pushes its messages back to back.
    const int n = 4;
    const size_t b = 4096;
    const LinkSpec link{.pcie_gen = 2, .lanes = 1, .p2p = false, .latency_s = 1e-6};
    auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(n, link));
    auto comms = make_local_communicators(n, links);
    std::vector<std::vector<char>> out(n, std::vector<char>(n * b, 3)), in(n, std::vector<char>(n * b));
    run_on_ranks(comms, [&](int r) {
        std::vector<size_t> counts(n, b);
        comms[r]->all_to_all_v(out[r].data(), counts, in[r].data(), counts);
    });
    const double t = b / link.bytes_per_s();
    // Rank s sends to s+1, s+2, ... (rotated order): the message to d leaves at ((d - s) mod n) * t.
    // Receiver r drains its messages in departure order, each once fully staged in host memory.
    for (int r = 0; r < n; ++r) {
        std::vector<std::pair<double, int>> arrivals;
        for (int s = 0; s < n; ++s)
            if (s != r) arrivals.push_back({((r - s + n) % n) * t, s});
        std::sort(arrivals.begin(), arrivals.end());
        double free = 0;
        for (auto [up_end, s] : arrivals) free = std::max(free, up_end) + t;
        EXPECT_DOUBLE_EQ(links->clock_s(r), free + link.latency_s) << "rank " << r;
    }
}

TEST(LinkEmulation, StagedMessageAsOneChunkIsStoreAndForward) {
    const LinkSpec link{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 2e-6};
    const LinkEmulation chunked({link, link}), whole({link, link}, false, 0);
    const size_t bytes = 10 * LinkEmulation::kDefaultStageChunkBytes;
    const double t = bytes / link.bytes_per_s();
    EXPECT_DOUBLE_EQ(whole.message_s(0, 1, bytes), 2 * t + link.latency_s);
    EXPECT_DOUBLE_EQ(chunked.message_s(0, 1, bytes), t + t / 10 + link.latency_s);
    EXPECT_DOUBLE_EQ(chunked.message_s(0, 1, 1000), whole.message_s(0, 1, 1000));
}

TEST(LinkEmulation, StagedAllToAllPipelinesChunksSoEachDownlinkIdlesOnlyForTheFirstChunk) {
    // Four staged cards, B = 8 chunks to each peer: sender s uplinks to s+1, s+2, s+3 back to back
    // (T = B / bw each). Receiver r's chunks become ready one chunk time c apart from c to 3T without
    // gaps, so its downlink is busy from c to 3T + c: (n-1) B of traffic in (n-1) T + c.
    const int n = 4;
    const size_t chunk = LinkEmulation::kDefaultStageChunkBytes, b = 8 * chunk;
    const LinkSpec link{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 1e-6};
    auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(n, link));
    auto comms = make_local_communicators(n, links);
    std::vector<std::vector<char>> out(n, std::vector<char>(n * b, 3)), in(n, std::vector<char>(n * b));
    run_on_ranks(comms, [&](int r) {
        std::vector<size_t> counts(n, b);
        comms[r]->all_to_all_v(out[r].data(), counts, in[r].data(), counts);
    });
    const double t = b / link.bytes_per_s(), c = chunk / link.bytes_per_s();
    for (int r = 0; r < n; ++r) {
        EXPECT_NEAR(links->clock_s(r), (n - 1) * t + c + link.latency_s, 1e-12) << "rank " << r;
        EXPECT_DOUBLE_EQ(links->down_busy_s(r), (n - 1) * t);
    }
}

TEST(LinkEmulation, BarrierAlignsEveryCardsClockToTheLatest) {
    const LinkSpec link{.pcie_gen = 1, .lanes = 1};
    auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(3, link));
    auto comms = make_local_communicators(3, links);
    std::vector<char> buf(1000);
    run_on_ranks(comms, [&](int r) {
        if (r == 0) comms[0]->send(buf.data(), buf.size(), 1);
        if (r == 1) comms[1]->recv(buf.data(), buf.size(), 0);
        comms[r]->barrier();
    });
    EXPECT_GT(links->clock_s(1), 0.0);
    EXPECT_EQ(links->clock_s(0), links->clock_s(1));
    EXPECT_EQ(links->clock_s(2), links->clock_s(1));
}

namespace {

/// Burns `seconds` of the calling thread's CPU time (not wall time: a descheduled thread keeps spinning).
void spin_cpu(double seconds) {
    const auto now = [] {
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
    };
    const double until = now() + seconds;
    volatile double sink = 0;
    while (now() < until) sink = sink + 1.0;
}

}  // namespace

TEST(LinkEmulation, ComputeClockGivesEveryRankAProcessorOfItsOwn) {
    // 4 ranks each compute 30 ms of CPU time at once, then pass a message round the ring and meet at a
    // barrier. On the compute clock the step takes 30 ms + one message however few cores ran the threads
    // (wall time here is up to 4 x 30 ms on one core); each rank's own compute is its thread's CPU time.
    constexpr int n = 4;
    constexpr double compute_s = 0.03;
    const LinkSpec link{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 5e-6};
    auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(n, link));
    auto comms = make_local_communicators(n, links);
    for (auto& c : comms) c->enable_compute_clock();
    std::vector<std::vector<char>> out(n, std::vector<char>(4096, 1)), in(n, std::vector<char>(4096));
    run_on_ranks(comms, [&](int r) {
        comms[r]->start_compute();
        spin_cpu(compute_s);
        comms[r]->group_start();
        comms[r]->send(out[r].data(), out[r].size(), (r + 1) % n);
        comms[r]->recv(in[r].data(), in[r].size(), (r + n - 1) % n);
        comms[r]->group_end();
        comms[r]->barrier();
    });
    const double message = links->message_s(0, 1, 4096);
    for (int r = 0; r < n; ++r) {
        EXPECT_GE(comms[r]->stats().compute_s, compute_s) << "rank " << r;
        EXPECT_LT(comms[r]->stats().compute_s, compute_s + 0.01) << "rank " << r;
        EXPECT_EQ(links->clock_s(r), links->clock_s(0));  // the barrier aligned them
    }
    EXPECT_GE(links->clock_s(0), compute_s + message);
    EXPECT_LT(links->clock_s(0), compute_s + message + 0.015);  // not n x compute_s: the cores are not shared
}

TEST(LinkEmulation, ComputeClockDelaysWhatTheComputingRankSendsAndNotTheWaitOfTheReceiver) {
    const LinkSpec link{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 5e-6};
    for (bool clock : {false, true}) {
        auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(2, link));
        auto comms = make_local_communicators(2, links);
        if (clock)
            for (auto& c : comms) c->enable_compute_clock();
        std::vector<char> buf(1000, 1), got(1000);
        run_on_ranks(comms, [&](int r) {
            comms[r]->start_compute();
            if (r == 0) {
                spin_cpu(0.02);
                comms[0]->send(buf.data(), buf.size(), 1);
            } else {
                comms[1]->recv(got.data(), got.size(), 0);  // waits ~20 ms of wall time: not compute
                comms[1]->account_compute();
            }
        });
        const double message = links->message_s(0, 1, buf.size());
        if (clock) {
            EXPECT_GE(links->clock_s(1), 0.02 + message);
            EXPECT_LT(links->clock_s(1), 0.02 + message + 0.005);
            EXPECT_LT(comms[1]->stats().compute_s, 0.005);
        } else {
            EXPECT_DOUBLE_EQ(links->clock_s(1), message);
            EXPECT_EQ(comms[1]->stats().compute_s, 0.0);
        }
    }
}

TEST(LinkEmulation, ExclusiveComputeClockLetsOneRankComputeAtATime) {
    // Three compute segments per rank between ring exchanges: with the exclusive clock no two ranks are ever
    // inside a segment together (the non-exclusive clock lets them share the host), and the clock still
    // describes cards computing at once: each step costs one rank's compute + one message, not four.
    constexpr int n = 4;
    constexpr double compute_s = 0.01;
    const LinkSpec link{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 5e-6};
    auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(n, link));
    auto comms = make_local_communicators(n, links);
    for (auto& c : comms) c->enable_compute_clock(true);
    std::atomic<int> inside{0}, most{0};
    std::vector<std::vector<char>> out(n, std::vector<char>(4096, 1)), in(n, std::vector<char>(4096));
    run_on_ranks(comms, [&](int r) {
        comms[r]->start_compute();
        for (int step = 0; step < 3; ++step) {
            const int now = ++inside;
            int seen = most.load();
            while (now > seen && !most.compare_exchange_weak(seen, now)) {
            }
            spin_cpu(compute_s);
            --inside;
            comms[r]->group_start();
            comms[r]->send(out[r].data(), out[r].size(), (r + 1) % n);
            comms[r]->recv(in[r].data(), in[r].size(), (r + n - 1) % n);
            comms[r]->group_end();
        }
        comms[r]->barrier();
    });
    EXPECT_EQ(most.load(), 1);
    const double message = links->message_s(0, 1, 4096);
    EXPECT_GE(links->clock_s(0), 3 * (compute_s + message));
    EXPECT_LT(links->clock_s(0), 3 * (compute_s + message) + 0.015);
}

TEST(LinkEmulation, ExclusiveComputeClockSurvivesAnAbortWhileARankComputes) {
    // Rank 0 fails while it holds the right to compute; the ranks waiting for it are released by the abort, and
    // after recover() the next step computes normally.
    constexpr int n = 3;
    const LinkSpec link{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 5e-6};
    auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(n, link));
    auto comms = make_local_communicators(n, links);
    for (auto& c : comms) c->enable_compute_clock(true);
    EXPECT_THROW(run_on_ranks(comms,
                              [&](int r) {
                                  comms[r]->start_compute();
                                  if (r == 0) {
                                      spin_cpu(0.005);
                                      MOERIG_THROW(moerig::Error, "card 0 failed");
                                  }
                                  comms[r]->barrier();
                              }),
                 moerig::Error);
    for (auto& c : comms) c->recover();
    std::atomic<int> done{0};
    run_on_ranks(comms, [&](int r) {
        comms[r]->start_compute();
        spin_cpu(0.002);
        comms[r]->barrier();
        ++done;
    });
    EXPECT_EQ(done.load(), n);
}

TEST(LocalCommunicator, ComputeClockNeedsLinkEmulation) {
    auto comms = make_local_communicators(2);
    EXPECT_THROW(comms[0]->enable_compute_clock(), moerig::ConfigError);
}
