// Rig loading: every example rig resolves against the card catalog, links and overrides are applied,
// clusters carry their network, and every malformed rig gives one ConfigError naming file, line and field.
#include <gtest/gtest.h>

#include <functional>

#include "kernels/error.h"
#include "sharding/rig.h"
#include "tests/common/error_text.h"

using moerig::ConfigError;
using namespace moerig::sharding;

namespace {

const std::string kRigs = std::string(MOERIG_TEST_DATA) + "/planner/rigs/";

}  // namespace

TEST(Rig, LinkRatesPerLanePerDirection) {
    EXPECT_DOUBLE_EQ(link_bytes_per_s({1, 1, false}), 0.25e9);
    EXPECT_DOUBLE_EQ(link_bytes_per_s({2, 4, false}), 2.0e9);
    EXPECT_DOUBLE_EQ(link_bytes_per_s({3, 4, false}), 4 * 0.985e9);
    EXPECT_DOUBLE_EQ(link_bytes_per_s({4, 16, true}), 16 * 1.97e9);
    EXPECT_DOUBLE_EQ(pcie_lane_bytes_per_s(7), 0.0);
}

TEST(Rig, EveryExampleRigLoads) {
    const auto names = catalog_rig_names();
    EXPECT_GE(names.size(), 5u);
    for (const auto& n : names) {
        const RigSpec rig = load_rig(n);
        EXPECT_EQ(rig.name, n) << "rig name must match its file name";
        EXPECT_GT(rig.num_cards(), 0u) << n;
        EXPECT_GT(rig.total_usable_bytes(), 0u) << n;
        for (const auto& c : rig.cards) EXPECT_GT(c.link_bytes_per_s(), 0) << n;
    }
}

TEST(Rig, MiningRigExpandsCountsWithLinksAndReserves) {
    const RigSpec rig = load_rig("p106-8x-gen1x1");
    ASSERT_EQ(rig.num_cards(), 8u);
    EXPECT_FALSE(rig.is_cluster());
    EXPECT_EQ(rig.hosts[0].ram_bytes, 16ull << 30);
    EXPECT_DOUBLE_EQ(rig.hosts[0].mem_bw_bytes_per_s, 19.2e9);
    for (uint32_t i = 0; i < 8; ++i) {
        const auto& c = rig.cards[i];
        EXPECT_EQ(c.card_idx, i);
        EXPECT_EQ(c.local_idx, i);
        EXPECT_EQ(c.spec.name, "P106-100");
        EXPECT_DOUBLE_EQ(c.link_bytes_per_s(), 0.25e9);
        EXPECT_FALSE(c.link.p2p);
        EXPECT_EQ(c.usable_bytes(), (6ull << 30) - (350ull << 20));
    }
    EXPECT_EQ(rig.total_vram_bytes(), 8 * (6ull << 30));
}

TEST(Rig, MixedRigKeepsCardOrderAndSpecs) {
    const RigSpec rig = load_rig("mixed-cmp40hx-3070-p104");
    ASSERT_EQ(rig.num_cards(), 6u);
    EXPECT_EQ(rig.cards[0].spec.name, "CMP 40HX");
    EXPECT_EQ(rig.cards[2].spec.name, "RTX 3070");
    EXPECT_EQ(rig.cards[5].spec.name, "P104-100");
    EXPECT_DOUBLE_EQ(rig.cards[2].link_bytes_per_s(), 4 * 0.985e9);
    EXPECT_DOUBLE_EQ(rig.cards[0].link_bytes_per_s(), 4 * 0.25e9);
    EXPECT_DOUBLE_EQ(rig.cards[5].link_bytes_per_s(), 0.25e9);
    EXPECT_DOUBLE_EQ(rig.cards[2].spec.mem_bw_bytes_per_s, 448e9);
}

TEST(Rig, ClusterHasHostsAndNetwork) {
    const RigSpec rig = load_rig("cluster-2x-10gbe");
    ASSERT_TRUE(rig.is_cluster());
    ASSERT_EQ(rig.hosts.size(), 2u);
    ASSERT_EQ(rig.num_cards(), 14u);
    ASSERT_TRUE(rig.network.has_value());
    EXPECT_DOUBLE_EQ(rig.network->bytes_per_s, 1.25e9);
    EXPECT_DOUBLE_EQ(rig.network->latency_s, 50e-6);
    EXPECT_EQ(rig.hosts[1].card_idx.front(), 6u);
    EXPECT_EQ(rig.cards[6].host_idx, 1u);
    EXPECT_EQ(rig.cards[6].local_idx, 0u);
    EXPECT_EQ(rig.total_host_ram_bytes(), (64ull + 16) << 30);
}

TEST(Rig, PerCardOverridesApplyOnlyToTheirEntry) {
    const RigSpec rig = load_rig("cmp90hx-4x-with-override");
    ASSERT_EQ(rig.num_cards(), 4u);
    EXPECT_EQ(rig.cards[0].spec.reserve_bytes, 450ull << 20);
    EXPECT_EQ(rig.cards[3].spec.reserve_bytes, 2ull << 30);
    EXPECT_EQ(rig.cards[3].usable_bytes(), (10ull << 30) - (2ull << 30));
}

TEST(Rig, LinkIsCappedAtWhatTheCardNegotiates) {
    const auto root = YamlNode::load_string(
        "name: x\nhost: {ram: 8 GiB, mem_bw: 20 GB/s}\ncards:\n  - {card: P106-100, pcie_gen: 3, lanes: 16}\n",
        "inline.yaml");
    const RigSpec rig = parse_rig(root, CardCatalog::load_default());
    EXPECT_EQ(rig.cards[0].link.pcie_gen, 1u);
    EXPECT_EQ(rig.cards[0].link.lanes, 4u);
}

TEST(RigErrors, SyntaxErrorNamesFileAndLine) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "syntax-error.yaml"); });
    EXPECT_NE(msg.find("syntax-error.yaml:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("YAML syntax error"), std::string::npos) << msg;
    // The unclosed "[8" on line 7 is reported on line 7 or where the parser gives up (line 8).
    EXPECT_TRUE(msg.find("yaml:7:") != std::string::npos || msg.find("yaml:8:") != std::string::npos) << msg;
}

TEST(RigErrors, WrongTypeNamesLineAndField) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "missing-lanes-type.yaml"); });
    EXPECT_NE(msg.find("missing-lanes-type.yaml:9: cards[0].lanes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'four'"), std::string::npos) << msg;
}

TEST(RigErrors, MissingFieldNamesField) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "missing-ram.yaml"); });
    EXPECT_NE(msg.find("missing-ram.yaml:3: host.ram"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing required field 'ram'"), std::string::npos) << msg;
}

TEST(RigErrors, UnknownCardListsCloseMatchesWithLine) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "unknown-card.yaml"); });
    EXPECT_NE(msg.find("unknown-card.yaml:8: cards[1].card"), std::string::npos) << msg;
    EXPECT_NE(msg.find("P106-100"), std::string::npos) << msg;
}

TEST(RigErrors, MisspelledFieldIsRejectedWithSuggestion) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "misspelled-field.yaml"); });
    EXPECT_NE(msg.find("misspelled-field.yaml:8: cards[0].pcie_gne: unknown field"), std::string::npos) << msg;
    EXPECT_NE(msg.find("did you mean: pcie_gen"), std::string::npos) << msg;
}

TEST(RigErrors, NegativeSizeIsRejected) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "negative-vram.yaml"); });
    EXPECT_NE(msg.find("cards[0].vram"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'-6 GiB'"), std::string::npos) << msg;
}

TEST(RigErrors, ClusterWithoutNetworkIsRejected) {
    const std::string msg = moerig::testing::error_text([] { load_rig(kRigs + "cluster-no-network.yaml"); });
    EXPECT_NE(msg.find("needs network"), std::string::npos) << msg;
}

TEST(RigErrors, UnknownRigNameListsCloseMatches) {
    const std::string msg = moerig::testing::error_text([] { load_rig("p106-8x-gen1"); });
    EXPECT_NE(msg.find("unknown rig 'p106-8x-gen1'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("p106-8x-gen1x1"), std::string::npos) << msg;
}

TEST(Units, SizesAndRatesParseWithUnits) {
    EXPECT_EQ(parse_bytes("8 GiB"), 8ull << 30);
    EXPECT_EQ(parse_bytes("6GB"), 6000000000ull);
    EXPECT_EQ(parse_bytes("300 MiB"), 300ull << 20);
    EXPECT_EQ(parse_bytes("1.5e9"), 1500000000ull);
    EXPECT_FALSE(parse_bytes("-1 GiB").has_value());
    EXPECT_FALSE(parse_bytes("8 GiBs").has_value());
    EXPECT_FALSE(parse_bytes("lots").has_value());
    EXPECT_DOUBLE_EQ(*parse_rate("448 GB/s"), 448e9);
    EXPECT_DOUBLE_EQ(*parse_rate("10 Gbit/s"), 1.25e9);
    EXPECT_DOUBLE_EQ(*parse_rate("985 MB/s"), 985e6);
    EXPECT_DOUBLE_EQ(*parse_rate("1.25e9"), 1.25e9);
    EXPECT_FALSE(parse_rate("448 GB").has_value());
}
