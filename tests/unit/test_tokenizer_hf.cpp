// Tokenizer from Hugging Face tokenizer.json vs the `tokenizers` library: for every fixture in
// tests/data/hf_tokenizer (byte-level BPE as Qwen2/Qwen3, OLMoE, DeepSeek-V3 and gpt-oss ship it, SentencePiece-style
// BPE as Llama-2 and Mixtral do), the ids with and without special tokens, BOS/EOS and the decoded texts must be
// exactly the library's (tools/make_hf_tokenizer_fixtures.py). Plus NFC and the error paths.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kernels/error.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_nfc.h"
#include "tests/common/fixture_cache.h"

using moerig::FormatError;
using moerig::UnsupportedError;
using moerig::runtime::nfc_normalize;
using moerig::runtime::Tokenizer;

namespace {

const std::string kDir = std::string(MOERIG_TEST_DATA) + "/hf_tokenizer/";

struct Fixture {
    nlohmann::json truth;
    std::unique_ptr<Tokenizer> tokenizer;
};

Fixture load_fixture(const std::string& name) {
    Fixture f;
    f.truth = moerig::testing::read_json_file(kDir + name + ".truth.json");
    f.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_hf_json(kDir + f.truth["tokenizer"].get<std::string>()));
    return f;
}

const Fixture& fixture(const std::string& name) {
    return moerig::testing::load_once<load_fixture>(name);
}

std::string show(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += std::to_string(id) + " ";
    return s;
}

class HfTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(HfTokenizer, MatchesTheTokenizersLibrary) {
    const Fixture& f = fixture(GetParam());
    const Tokenizer& tok = *f.tokenizer;
    EXPECT_TRUE(tok.is_hf());
    EXPECT_EQ(tok.vocab_size(), f.truth["vocab_size"].get<size_t>());
    EXPECT_EQ(tok.add_bos(), f.truth["add_bos"].get<bool>());
    if (f.truth["bos"].is_null())
        EXPECT_EQ(tok.bos_id(), Tokenizer::kNoToken);
    else
        EXPECT_EQ(tok.bos_id(), f.truth["bos"].get<int32_t>());
    EXPECT_EQ(tok.eos_id(), f.truth["eos"].get<int32_t>());
    EXPECT_TRUE(tok.is_eog(tok.eos_id()));
    int failures = 0;
    for (const auto& c : f.truth["cases"]) {
        const std::string text = c["text"];
        SCOPED_TRACE("text: '" + text + "'");
        const auto with_special = c["ids_add_special"].get<std::vector<int32_t>>();
        const auto plain = c["ids"].get<std::vector<int32_t>>();
        const auto got_with = tok.encode(text, true);
        const auto got_plain = tok.encode(text, false);
        EXPECT_EQ(show(got_with), show(with_special));
        EXPECT_EQ(show(got_plain), show(plain));
        EXPECT_EQ(tok.decode(with_special, true), c["decoded"].get<std::string>());
        EXPECT_EQ(tok.decode(with_special, false), c["decoded_skip_special"].get<std::string>());
        failures += got_with != with_special || got_plain != plain;
        if (failures > 5) break;
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfTokenizer,
                         ::testing::Values("qwen2", "qwen3", "olmoe", "deepseek-v3", "gpt-oss", "llama2", "mixtral"),
                         [](const auto& info) {
                             std::string n = info.param;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

TEST(HfTokenizer, EndOfGenerationFromAddedTokens) {
    const Tokenizer& qwen = *fixture("qwen3").tokenizer;
    EXPECT_TRUE(qwen.is_eog(qwen.find_token("<|im_end|>")));
    EXPECT_TRUE(qwen.is_eog(qwen.find_token("<|endoftext|>")));
    EXPECT_FALSE(qwen.is_eog(qwen.find_token("<think>")));
    const Tokenizer& oss = *fixture("gpt-oss").tokenizer;
    EXPECT_TRUE(oss.is_eog(oss.find_token("<|return|>")));
    EXPECT_TRUE(oss.is_eog(oss.find_token("<|call|>")));
    EXPECT_FALSE(oss.is_eog(oss.find_token("<|end|>")));  // harmony: ends a message, not the generation
}

TEST(HfTokenizer, LoadsFromTheCheckpointFolder) {
    const Tokenizer dir = Tokenizer::from_hf_json(kDir + "deepseek-v3");
    EXPECT_EQ(dir.encode("Hello world"), fixture("deepseek-v3").tokenizer->encode("Hello world"));
    EXPECT_TRUE(dir.add_bos());  // from tokenizer_config.json next to it
}

TEST(HfTokenizer, ParseSpecialOffLeavesControlTokensAsText) {
    const Tokenizer& tok = *fixture("qwen3").tokenizer;
    const auto ids = tok.encode("<|im_end|><think>", false, false);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), tok.find_token("<|im_end|>")), 0);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), tok.find_token("<think>")), 1);  // not special: always matched
    EXPECT_EQ(tok.decode(ids), "<|im_end|><think>");
}

TEST(HfTokenizer, ByteFallbackDecodesInvalidRunsAsReplacementCharacters) {
    const Tokenizer& tok = *fixture("llama2").tokenizer;
    const int32_t e2 = tok.find_token("<0xE2>");
    const int32_t x41 = tok.find_token("<0x41>");
    ASSERT_NE(e2, Tokenizer::kNoToken);
    EXPECT_EQ(tok.decode({x41, e2}), "\xEF\xBF\xBD\xEF\xBF\xBD");  // the whole run, one U+FFFD per byte
    EXPECT_EQ(tok.decode({e2, tok.find_token("<0x96>"), tok.find_token("<0x81>"), x41}),
              "\xE2\x96\x81"
              "A");
}

TEST(Nfc, ComposesReordersAndKeepsStableText) {
    EXPECT_EQ(nfc_normalize("plain ascii, Latin-1 \xC3\xA9"), "plain ascii, Latin-1 \xC3\xA9");
    EXPECT_EQ(nfc_normalize("e\xCC\x81"), "\xC3\xA9");                                 // e + U+0301 -> é
    EXPECT_EQ(nfc_normalize("\xE2\x84\xAB"), "\xC3\x85");                              // U+212B ANGSTROM -> Å
    EXPECT_EQ(nfc_normalize("\xEF\xA4\x80"), "\xE8\xB1\x88");                          // U+F900 -> U+8C48
    EXPECT_EQ(nfc_normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> U+AC01
    // a + U+0323 (dot below, 220) + U+0302 (circumflex, 230) and the reverse order compose alike: U+1EAD.
    EXPECT_EQ(nfc_normalize("a\xCC\x82\xCC\xA3"), "\xE1\xBA\xAD");
    EXPECT_EQ(nfc_normalize("a\xCC\xA3\xCC\x82"), "\xE1\xBA\xAD");
    // b + acute has no composite; a starter between base and mark blocks composition.
    EXPECT_EQ(nfc_normalize("ab\xCC\x81"), "ab\xCC\x81");
}

// --- error paths: the message names the file and the JSON field -------------------------------------------------

std::string minimal(const std::string& model_type, const std::string& pre) {
    return R"({"added_tokens":[],"normalizer":null,"pre_tokenizer":)" + pre +
           R"(,"post_processor":null,"decoder":null,"model":{"type":")" + model_type +
           R"(","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}})";
}

template <typename Err>
std::string error_of(const std::string& json, const std::string& config = {}) {
    try {
        Tokenizer::from_hf_json_text(json, config, "dir/tokenizer.json", "dir/tokenizer_config.json");
    } catch (const Err& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error thrown";
    return {};
}

const std::string kByteLevel = R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true})";

TEST(HfTokenizerErrors, MinimalFileLoads) {
    const Tokenizer t = Tokenizer::from_hf_json_text(minimal("BPE", kByteLevel), "", "mem");
    EXPECT_EQ(t.encode("ab", false), std::vector<int32_t>{2});
    EXPECT_EQ(t.encode("ba", false), (std::vector<int32_t>{1, 0}));
}

TEST(HfTokenizerErrors, BadJson) {
    const std::string msg = error_of<FormatError>(R"({"model": {"type": "BPE", )");
    EXPECT_NE(msg.find("dir/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
    const std::string cfg = error_of<FormatError>(minimal("BPE", kByteLevel), "{oops");
    EXPECT_NE(cfg.find("dir/tokenizer_config.json"), std::string::npos) << cfg;
}

TEST(HfTokenizerErrors, UnknownModelType) {
    const std::string msg = error_of<UnsupportedError>(minimal("WordPiece", kByteLevel));
    EXPECT_NE(msg.find("dir/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.type"), std::string::npos) << msg;
    EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
}

TEST(HfTokenizerErrors, UnknownSplitRegex) {
    const std::string pre =
        R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+|\\d"},"behavior":"Isolated",)"
        R"("invert":false},)" +
        kByteLevel + "]}";
    const std::string msg = error_of<UnsupportedError>(minimal("BPE", pre));
    EXPECT_NE(msg.find("dir/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("pre_tokenizer.pretokenizers[0].pattern.Regex"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\\w+|\\d"), std::string::npos) << msg;
}

TEST(HfTokenizerErrors, BadFields) {
    const std::string no_vocab = R"({"pre_tokenizer":)" + kByteLevel + R"(,"model":{"type":"BPE","merges":[]}})";
    EXPECT_NE(error_of<FormatError>(no_vocab).find("model.vocab"), std::string::npos);
    std::string bad_merge = minimal("BPE", kByteLevel);
    bad_merge.replace(bad_merge.find("\"a b\""), 5, "\"a c\"");
    EXPECT_NE(error_of<FormatError>(bad_merge).find("model.merges[0]"), std::string::npos);
    std::string nfkc = minimal("BPE", kByteLevel);
    nfkc.replace(nfkc.find("\"normalizer\":null"), 17, R"("normalizer":{"type":"NFKC"})");
    const std::string msg = error_of<UnsupportedError>(nfkc);
    EXPECT_NE(msg.find("normalizer.type"), std::string::npos) << msg;
    EXPECT_NE(error_of<UnsupportedError>(minimal("BPE", "null")).find("pre_tokenizer"), std::string::npos);
    EXPECT_NE(error_of<FormatError>(minimal("BPE", kByteLevel), R"({"add_bos_token":true})").find("add_bos_token"),
              std::string::npos);
    EXPECT_THROW(Tokenizer::from_hf_json(kDir + "no-such/tokenizer.json"), FormatError);
}

}  // namespace

namespace {

// The regexes without a fixture of their own (Llama-3, tekken) load and split: "ab ba" -> "ab", " ba".
TEST(HfTokenizerErrors, OtherKnownSplitRegexesLoad) {
    for (
        const std::string regex :
        {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)",
         R"([^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)"}) {
        const std::string pre = R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":")" + regex +
                                R"("},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]})";
        std::string json = minimal("BPE", pre);
        json.replace(json.find("\"ab\":2"), 6, R"("ab":2,"Ġ":3,"Ġb":4,"Ġba":5)");
        json.replace(json.find("[\"a b\"]"), 7, R"(["a b","Ġ b","Ġb a"])");
        const Tokenizer t = Tokenizer::from_hf_json_text(json, "", "mem");
        EXPECT_EQ(t.encode("ab ba", false), (std::vector<int32_t>{2, 5})) << regex;
    }
}

}  // namespace
