// Tokenizer behaviour on small vocabularies written by the test: SPM merges by score, byte fallback and the
// leading-space rule; BPE merges by rank in the byte-level alphabet; special-token matching; BOS/EOS rules;
// one clear error per kind of bad metadata. Utf8Stream: never a partial character.
#include <gtest/gtest.h>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"
#include "tests/common/gguf_builder.h"

using moerig::FormatError;
using moerig::UnsupportedError;
using moerig::formats::GgufFile;
using moerig::runtime::Tokenizer;
using moerig::runtime::Utf8Stream;
using moerig::testing::GgufBuilder;

namespace {

struct Vocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    int32_t add(const std::string& t, float score = 0.f, int32_t type = 1) {
        tokens.push_back(t);
        scores.push_back(score);
        types.push_back(type);
        return static_cast<int32_t>(tokens.size() - 1);
    }
};

// Parses the builder's image and builds the tokenizer from its metadata.
Tokenizer tokenizer_of(const GgufBuilder& b) {
    static std::vector<std::vector<uint8_t>> keep_alive;  // GgufFile needs its bytes; tests are tiny
    keep_alive.push_back(b.build());
    GgufFile f(keep_alive.back().data(), keep_alive.back().size(), "vocab.gguf");
    return Tokenizer::from_metadata(f.metadata(), "vocab.gguf");
}

class SpmVocab : public ::testing::Test {
  protected:
    void SetUp() override {
        unk = v.add("<unk>", 0, 2);
        bos = v.add("<s>", 0, 3);
        eos = v.add("</s>", 0, 3);
        for (int b = 0; b < 256; ++b) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            const int32_t id = v.add(name, 0, 6);
            if (b == 0) byte0 = id;
        }
        sp = v.add("\xE2\x96\x81", -1.f);
        h = v.add("h", -2.f);
        i = v.add("i", -2.f);
        sp_h = v.add("\xE2\x96\x81h", -3.f);
        hi = v.add("hi", -1.5f);
        sp_hi = v.add("\xE2\x96\x81hi", -0.5f);
        user = v.add("<|user|>", 0, 4);
    }
    GgufBuilder builder() const {
        GgufBuilder b;
        b.kv_str("tokenizer.ggml.model", "llama").kv_strs("tokenizer.ggml.tokens", v.tokens);
        b.kv_f32s("tokenizer.ggml.scores", v.scores).kv_i32s("tokenizer.ggml.token_type", v.types);
        return b;
    }
    Vocab v;
    int32_t unk, bos, eos, byte0, sp, h, i, sp_h, hi, sp_hi, user;
};

TEST_F(SpmVocab, MergesHighestScoringPairsAndAddsBosAndLeadingSpace) {
    const Tokenizer t = tokenizer_of(builder());
    EXPECT_EQ(t.bos_id(), bos);
    EXPECT_EQ(t.eos_id(), eos);
    EXPECT_EQ(t.encode("hi"), (std::vector<int32_t>{bos, sp_hi}));
    EXPECT_EQ(t.encode("hi", false), (std::vector<int32_t>{sp_hi}));
    EXPECT_EQ(t.encode("hi hi", false), (std::vector<int32_t>{sp_hi, sp_hi}));
    EXPECT_EQ(t.encode("", true), (std::vector<int32_t>{bos}));
    EXPECT_TRUE(t.encode("", false).empty());
}

TEST_F(SpmVocab, UnknownCharactersFallBackToByteTokens) {
    const Tokenizer t = tokenizer_of(builder());
    // "é" is C3 A9 and no token; the space prefix stays a token of its own.
    EXPECT_EQ(t.encode("\xC3\xA9", false), (std::vector<int32_t>{sp, byte0 + 0xC3, byte0 + 0xA9}));
    EXPECT_EQ(t.decode(t.encode("\xC3\xA9 hi", false)), "\xC3\xA9 hi");
}

TEST_F(SpmVocab, ControlTokensMatchOnlyWithParseSpecialButUserDefinedAlways) {
    const Tokenizer t = tokenizer_of(builder());
    EXPECT_EQ(t.encode("hi</s>", false, true), (std::vector<int32_t>{sp_hi, eos}));
    const auto plain = t.encode("hi</s>", false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), eos), 0);
    // After a special token the next word gets the space prefix again.
    EXPECT_EQ(t.encode("<|user|>hi", false, false), (std::vector<int32_t>{user, sp_hi}));
}

TEST_F(SpmVocab, MetadataOverridesBosEosRules) {
    GgufBuilder b = builder();
    b.kv_bool("tokenizer.ggml.add_bos_token", false).kv_bool("tokenizer.ggml.add_eos_token", true);
    b.kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(user));
    const Tokenizer t = tokenizer_of(b);
    EXPECT_EQ(t.encode("hi"), (std::vector<int32_t>{sp_hi, user}));
    EXPECT_TRUE(t.is_eog(user));
}

TEST_F(SpmVocab, PiecesTurnSpaceMarkAndByteTokensIntoBytes) {
    const Tokenizer t = tokenizer_of(builder());
    EXPECT_EQ(t.token_to_piece(sp_hi), " hi");
    EXPECT_EQ(t.token_to_piece(byte0 + 0x41), "A");
    EXPECT_EQ(t.token_to_piece(eos, true), "</s>");
    EXPECT_EQ(t.token_to_piece(eos, false), "");
    EXPECT_EQ(t.token_to_piece(-1), "");
    EXPECT_EQ(t.token_to_piece(static_cast<int32_t>(t.vocab_size())), "");
}

GgufBuilder bpe_builder(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
                        const std::string& pre) {
    GgufBuilder b;
    b.kv_str("tokenizer.ggml.model", "gpt2").kv_str("tokenizer.ggml.pre", pre);
    b.kv_strs("tokenizer.ggml.tokens", tokens).kv_strs("tokenizer.ggml.merges", merges);
    return b;
}

TEST(BpeVocab, MergesByRankInTheByteAlphabet) {
    // "Ġ" (U+0120) is the byte-level stand-in for a space.
    const std::vector<std::string> tokens = {"a",
                                             "b",
                                             "c",
                                             "ab",
                                             "bc",
                                             "\xC4\xA0",
                                             "\xC4\xA0"
                                             "ab"};
    const Tokenizer t = tokenizer_of(bpe_builder(tokens, {"b c", "a b", "\xC4\xA0 ab"}, "gpt-2"));
    // "abc": rank 0 merges b+c first, so a + bc rather than ab + c.
    EXPECT_EQ(t.encode("abc", false), (std::vector<int32_t>{0, 4}));
    EXPECT_EQ(t.encode("ab", false), (std::vector<int32_t>{3}));
    EXPECT_EQ(t.encode("ab ab", false), (std::vector<int32_t>{3, 6}));
    EXPECT_EQ(t.token_to_piece(6), " ab");
    EXPECT_EQ(t.decode(t.encode("ab ab cab", false)), "ab ab cab");
}

TEST(BpeVocab, BytesWithoutATokenAreDropped) {
    const Tokenizer t = tokenizer_of(bpe_builder({"a", "b"}, {}, "gpt-2"));
    EXPECT_EQ(t.encode("a\xE2\x82\xAC"
                       "b",
                       false),
              (std::vector<int32_t>{0, 1}));
}

TEST(TokenizerErrors, MissingModelKeyIsAFormatErrorNamingTheKey) {
    GgufBuilder b;
    b.kv_strs("tokenizer.ggml.tokens", {"a"});
    try {
        tokenizer_of(b);
        FAIL() << "no error";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("vocab.gguf"), std::string::npos) << e.what();
    }
}

TEST(TokenizerErrors, UnknownModelOrPreTokenizerIsUnsupported) {
    GgufBuilder b;
    b.kv_str("tokenizer.ggml.model", "t5").kv_strs("tokenizer.ggml.tokens", {"a"});
    EXPECT_THROW(tokenizer_of(b), UnsupportedError);
    EXPECT_THROW(tokenizer_of(bpe_builder({"a"}, {}, "no-such-pre")), UnsupportedError);
}

TEST(TokenizerErrors, BadTokenTablesAreFormatErrors) {
    EXPECT_THROW(tokenizer_of(bpe_builder({"a", "a"}, {}, "gpt-2")), FormatError);  // duplicate
    GgufBuilder no_merges;
    no_merges.kv_str("tokenizer.ggml.model", "gpt2").kv_strs("tokenizer.ggml.tokens", {"a"});
    EXPECT_THROW(tokenizer_of(no_merges), FormatError);
    GgufBuilder short_scores;
    short_scores.kv_str("tokenizer.ggml.model", "llama").kv_strs("tokenizer.ggml.tokens", {"a", "b"});
    short_scores.kv_f32s("tokenizer.ggml.scores", {0.f});
    EXPECT_THROW(tokenizer_of(short_scores), FormatError);
    GgufBuilder wrong_type;
    wrong_type.kv_str("tokenizer.ggml.model", "llama").kv_str("tokenizer.ggml.tokens", "a");
    EXPECT_THROW(tokenizer_of(wrong_type), FormatError);
}

TEST(Utf8Stream, MultiByteCharactersSplitAtEveryByteComeOutWhole) {
    const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z
    for (size_t cut = 0; cut <= text.size(); ++cut) {
        Utf8Stream s;
        const std::string first = s.push(text.substr(0, cut));
        const std::string second = s.push(text.substr(cut));
        EXPECT_EQ(first + second + s.finish(), text) << "cut " << cut;
        // The first part is a prefix of the text ending on a character boundary.
        EXPECT_EQ(text.compare(0, first.size(), first), 0);
        EXPECT_TRUE(first.size() == text.size() || (static_cast<unsigned char>(text[first.size()]) & 0xC0) != 0x80);
    }
}

TEST(Utf8Stream, InvalidBytesBecomeReplacementCharacters) {
    Utf8Stream s;
    EXPECT_EQ(s.push("\x80"
                     "a\xFF"),
              "\xEF\xBF\xBD"
              "a\xEF\xBF\xBD");
    EXPECT_EQ(s.push("\xE2\x82"), "");
    EXPECT_EQ(s.pending(), 2u);
    EXPECT_EQ(s.push("b"),
              "\xEF\xBF\xBD"
              "b");  // the cut-off lead never completes
    EXPECT_EQ(s.push("\xF0\x9F"), "");
    EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
    EXPECT_EQ(s.push("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: not UTF-8
}

}  // namespace

TEST_F(SpmVocab, SpecialIdsOfAnyIntegerTypeAreReadAndOutOfRangeOnesIgnored) {
    GgufBuilder b = builder();
    b.kv_i32("tokenizer.ggml.bos_token_id", user).kv_i32("tokenizer.ggml.eos_token_id", -1);
    b.kv_u64("tokenizer.ggml.unknown_token_id", uint64_t{1} << 40);
    const Tokenizer t = tokenizer_of(b);
    EXPECT_EQ(t.bos_id(), user);
    EXPECT_EQ(t.eos_id(), eos);  // -1 is out of range: the default stays
    EXPECT_EQ(t.unk_id(), unk);
}
