// GGUF reader: metadata of every type, tensor tables, split models, and one clear FormatError for
// every kind of damage (truncation at any byte, bad magic, bad version, bad types, misaligned data).
#include <gtest/gtest.h>

#include <filesystem>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "tests/common/gguf_builder.h"

using moerig::DType;
using moerig::FormatError;
using moerig::formats::GgufFile;
using moerig::formats::GgufModel;
using moerig::testing::GgufBuilder;

namespace {

GgufBuilder sample() {
    GgufBuilder b;
    b.kv_str("general.architecture", "qwen3moe")
        .kv_u32("qwen3moe.block_count", 2)
        .kv_f32("qwen3moe.rope.freq_base", 1e6f)
        .kv_bool("tokenizer.ggml.add_bos_token", false)
        .kv_u64("big", uint64_t{1} << 40)
        .kv_i32("neg", -7)
        .kv_strs("tokenizer.ggml.tokens", {"a", "b", "<s>"})
        .kv_i32s("tokenizer.ggml.token_type", {1, 1, 3})
        .kv_f32s("tokenizer.ggml.scores", {0.5f, -1.f, 0.f})
        .tensor("token_embd.weight", {64, 3}, DType::F32)
        .tensor("blk.0.ffn_gate_exps.weight", {256, 8, 4}, DType::Q4_K)
        .tensor("blk.0.ffn_down_exps.weight", {32, 16, 4}, DType::Q8_0);
    return b;
}

std::filesystem::path temp_path(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("moerig_test_" + std::to_string(::getpid()) + "_" + name);
}

}  // namespace

TEST(Gguf, ParsesMetadataOfEveryTypeAndTensorTable) {
    auto bytes = sample().build();
    GgufFile f(bytes.data(), bytes.size(), "sample.gguf");
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.metadata().at("general.architecture").s, "qwen3moe");
    EXPECT_EQ(f.metadata().at("qwen3moe.block_count").u, 2u);
    EXPECT_FLOAT_EQ(f.metadata().at("qwen3moe.rope.freq_base").f, 1e6f);
    EXPECT_EQ(f.metadata().at("big").u, uint64_t{1} << 40);
    EXPECT_EQ(f.metadata().at("neg").i, -7);
    ASSERT_EQ(f.tensors().size(), 3u);
    const auto& gate = f.tensors()[1];
    EXPECT_EQ(gate.name, "blk.0.ffn_gate_exps.weight");
    EXPECT_EQ(gate.type, DType::Q4_K);
    EXPECT_EQ(gate.num_bytes, 8u * 4 * 144);
    EXPECT_EQ(f.tensors()[2].num_bytes, 16u * 4 * 34);
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_EQ(gate.data - bytes.data(), static_cast<ptrdiff_t>(f.data_offset() + gate.offset));
}

TEST(Gguf, TruncationAtEveryByteIsAFormatErrorNotACrash) {
    auto bytes = sample().build();
    for (size_t n = 0; n < bytes.size(); ++n) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
        EXPECT_THROW(GgufFile(cut.data(), cut.size(), "cut.gguf"), FormatError) << "prefix " << n;
    }
}

TEST(Gguf, TruncatedFileNamesFileAndOffset) {
    auto bytes = sample().build();
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + 40);
    try {
        GgufFile f(cut.data(), cut.size(), "model.gguf");
        FAIL() << "no error";
    } catch (const FormatError& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("model.gguf"), std::string::npos) << msg;
        EXPECT_NE(msg.find("offset"), std::string::npos) << msg;
        EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    }
}

TEST(Gguf, RejectsBadMagicVersionAndTypes) {
    auto bytes = sample().build();
    auto bad = bytes;
    bad[0] = 'X';
    EXPECT_THROW(GgufFile(bad.data(), bad.size(), "x"), FormatError);
    bad = bytes;
    bad[4] = 9;
    EXPECT_THROW(GgufFile(bad.data(), bad.size(), "x"), FormatError);
    // Unknown ggml tensor type id.
    GgufBuilder b;
    b.tensor("t", {32}, DType::Q8_0);
    auto img = b.build();
    // Tensor type sits after: header (24) + name (8 + 1) + n_dims (4) + dim (8).
    uint32_t bogus = 4;  // a retired ggml id
    std::memcpy(img.data() + 24 + 9 + 4 + 8, &bogus, 4);
    try {
        GgufFile f(img.data(), img.size(), "x.gguf");
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("unknown ggml type id 4"), std::string::npos) << e.what();
    }
}

TEST(Gguf, RejectsHugeCountsWithoutAllocating) {
    auto bytes = sample().build();
    uint64_t huge = uint64_t{1} << 60;
    std::memcpy(bytes.data() + 8, &huge, 8);
    EXPECT_THROW(GgufFile(bytes.data(), bytes.size(), "x"), FormatError);
}

TEST(Gguf, ModelTypedGettersNameKeyOnMismatch) {
    auto path = temp_path("typed.gguf");
    sample().write(path);
    GgufModel m(path);
    EXPECT_EQ(m.architecture(), "qwen3moe");
    EXPECT_EQ(m.get_u64("qwen3moe.block_count"), 2u);
    EXPECT_EQ(m.get_strings("tokenizer.ggml.tokens").size(), 3u);
    EXPECT_EQ(m.get_ints("tokenizer.ggml.token_type")[2], 3);
    EXPECT_EQ(m.get_bool_opt("tokenizer.ggml.add_bos_token"), false);
    EXPECT_FALSE(m.get_u64_opt("missing").has_value());
    try {
        m.get_u64("general.architecture");
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos);
    }
    EXPECT_THROW(m.get_u64("neg"), FormatError);
    EXPECT_EQ(m.tensor("blk.0.ffn_gate_exps.weight").dims[2], 4u);
    EXPECT_THROW(m.tensor("nope"), FormatError);
    std::filesystem::remove(path);
}

TEST(Gguf, SplitModelJoinsTensorsOfAllParts) {
    auto dir = temp_path("split");
    std::filesystem::create_directories(dir);
    GgufBuilder a, b;
    a.kv_str("general.architecture", "llama")
        .kv_u32("split.no", 0)
        .kv_u32("split.count", 2)
        .tensor("x", {32}, DType::F32);
    b.kv_u32("split.no", 1).kv_u32("split.count", 2).tensor("y", {64}, DType::F16);
    a.write(dir / "m-00001-of-00002.gguf");
    EXPECT_THROW(GgufModel(dir / "m-00001-of-00002.gguf"), FormatError);  // part 2 missing
    b.write(dir / "m-00002-of-00002.gguf");
    GgufModel m(dir / "m-00001-of-00002.gguf");
    EXPECT_EQ(m.num_files(), 2u);
    EXPECT_EQ(m.tensor("y").file_idx, 1u);
    EXPECT_EQ(m.tensor("y").num_bytes, 128u);
    std::filesystem::remove_all(dir);
}

TEST(DType, TableMatchesReferenceBlockSizes) {
    EXPECT_EQ(moerig::dtype_bytes(DType::Q4_K, 256), 144u);
    EXPECT_EQ(moerig::dtype_bytes(DType::Q6_K, 256), 210u);
    EXPECT_EQ(moerig::dtype_bytes(DType::MXFP4, 32), 17u);
    EXPECT_EQ(moerig::dtype_bytes(DType::IQ4_XS, 256), 136u);
    EXPECT_DOUBLE_EQ(moerig::dtype_bits_per_weight(DType::Q8_0), 8.5);
    EXPECT_EQ(moerig::dtype_from_name("q4_k"), DType::Q4_K);
    EXPECT_FALSE(moerig::dtype_from_name("Q4_K_M").has_value());
    EXPECT_FALSE(moerig::dtype_traits(4u).has_value());
    EXPECT_THROW(moerig::dtype_bytes(DType::Q4_K, 100), FormatError);
}
