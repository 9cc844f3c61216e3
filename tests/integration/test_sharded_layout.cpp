// ShardLayout: the standard layouts tile the layers and place every expert (replicas on distinct
// cards), participants are exactly the stage card and the slot holders, and validate() names the
// layer or expert a broken layout misses.
#include <gtest/gtest.h>

#include <set>

#include "kernels/error.h"
#include "runtime/sharded_layout.h"

using namespace moerig::runtime;

namespace {

ModelHParams moe_hparams(int64_t n_layer, int64_t n_expert, int64_t n_dense_lead = 0) {
    ModelHParams hp;
    hp.n_layer = n_layer;
    hp.n_expert = n_expert;
    hp.n_expert_used = 2;
    hp.n_layer_dense_lead = n_dense_lead;
    return hp;
}

}  // namespace

TEST(ShardLayout, StandardLayoutsTileLayersAndPlaceEveryExpert) {
    const ModelHParams hp = moe_hparams(7, 12, 1);
    for (const ShardLayout& layout :
         {ShardLayout::pipeline(hp, 3, 1), ShardLayout::expert_parallel(hp, 4, 1), ShardLayout::hybrid(hp, 6, 3, 1),
          ShardLayout::replicated(hp, 4, 2, 1), ShardLayout::pipeline(hp, 8, 1)}) {
        EXPECT_NO_THROW(layout.validate(hp));
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            const int stage = layout.stage_card(l);
            if (!hp.is_moe_layer(l)) {
                EXPECT_EQ(layout.participants(l).size(), 1u);
                continue;
            }
            std::set<int> expected{stage};
            for (int c = 0; c < layout.num_cards(); ++c)
                if (!layout.cards[c].experts[l].empty()) expected.insert(c);
            EXPECT_EQ(layout.participants(l), std::vector<int>(expected.begin(), expected.end()));
        }
    }
}

TEST(ShardLayout, PipelineKeepsEachLayersExpertsOnItsStageCard) {
    const ModelHParams hp = moe_hparams(6, 8);
    const ShardLayout layout = ShardLayout::pipeline(hp, 3, 1);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        EXPECT_EQ(layout.participants(l), std::vector<int>{layout.stage_card(l)});
        EXPECT_EQ(layout.cards[layout.stage_card(l)].experts[l].size(), 8u);
    }
    EXPECT_EQ(layout.cards[0].layer_end, 2);
    EXPECT_EQ(layout.cards[2].layer_begin, 4);
}

TEST(ShardLayout, ReplicatedLayoutHasTwoCopiesOfHotExpertsOnDistinctCards) {
    const ModelHParams hp = moe_hparams(2, 8);
    const ShardLayout layout = ShardLayout::replicated(hp, 4, 3, 1);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        const ExpertPlacement p = layout.placement(l, hp.n_expert);
        for (int e = 0; e < hp.n_expert; ++e) EXPECT_EQ(p.replicas[e].size(), e < 3 ? 2u : 1u) << "expert " << e;
    }
}

TEST(ShardLayout, ValidateNamesTheUnplacedLayerOrExpert) {
    const ModelHParams hp = moe_hparams(4, 4);
    ShardLayout gap = ShardLayout::pipeline(hp, 2, 1);
    gap.cards[1].layer_begin = 3;
    try {
        gap.validate(hp);
        FAIL();
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("layer 2 is in no card's stage"), std::string::npos) << e.what();
    }
    ShardLayout missing = ShardLayout::expert_parallel(hp, 2, 1);
    for (auto& card : missing.cards) std::erase(card.experts[1], 3);
    try {
        missing.validate(hp);
        FAIL();
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("expert 3 has no copy"), std::string::npos) << e.what();
    }
    ShardLayout overlap = ShardLayout::pipeline(hp, 2, 1);
    overlap.cards[0].layer_end = 3;
    EXPECT_THROW(overlap.validate(hp), moerig::ConfigError);
}
