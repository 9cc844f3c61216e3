// Tokenizer vs llama.cpp: for every fixture vocabulary in tests/data/tokenizer (SPM and byte-level BPE with
// several pre-tokenizers), the ids, pieces, BOS/EOS/EOG and round trips must be exactly llama.cpp's. The texts
// include llama.cpp's own ggml-vocab-*.gguf.inp cases (tools/make_tokenizer_fixtures.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "formats/gguf.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"
#include "tests/common/fixture_cache.h"

using moerig::formats::GgufModel;
using moerig::runtime::DetokenizerStream;
using moerig::runtime::is_whole_utf8;
using moerig::runtime::Tokenizer;

namespace {

const std::string kDir = std::string(MOERIG_TEST_DATA) + "/tokenizer/";

struct Fixture {
    nlohmann::json truth;
    std::unique_ptr<GgufModel> model;
    std::unique_ptr<Tokenizer> tokenizer;
};

Fixture load_fixture(const std::string& name) {
    Fixture f;
    f.truth = moerig::testing::read_json_file(kDir + name + ".json");
    f.model = std::make_unique<GgufModel>(kDir + f.truth["vocab"].get<std::string>());
    f.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*f.model));
    return f;
}

// Loaded once per vocabulary.
const Fixture& fixture(const std::string& name) {
    return moerig::testing::load_once<load_fixture>(name);
}

std::string hex(const std::string& bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
    return out;
}

std::string unhex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

class TokenizerVsLlamaCpp : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVsLlamaCpp, IdsEqualLlamaCppForEveryTextAndFlagCombination) {
    const Fixture& f = fixture(GetParam());
    size_t num_checked = 0;
    for (const auto& c : f.truth["cases"]) {
        const std::string text = c["text"];
        EXPECT_EQ(f.tokenizer->encode(text, true, true), c["ids_add_special"].get<std::vector<int32_t>>())
            << "add_special, parse_special: [" << text << "]";
        EXPECT_EQ(f.tokenizer->encode(text, false, true), c["ids"].get<std::vector<int32_t>>())
            << "parse_special: [" << text << "]";
        EXPECT_EQ(f.tokenizer->encode(text, false, false), c["ids_no_parse"].get<std::vector<int32_t>>())
            << "plain: [" << text << "]";
        ++num_checked;
    }
    EXPECT_GT(num_checked, 40u);
}

TEST_P(TokenizerVsLlamaCpp, PiecesEqualLlamaCppTokenToPiece) {
    const Fixture& f = fixture(GetParam());
    for (const auto& c : f.truth["cases"]) {
        const auto ids = c["ids"].get<std::vector<int32_t>>();
        const auto pieces = c["pieces_hex"].get<std::vector<std::string>>();
        ASSERT_EQ(ids.size(), pieces.size());
        for (size_t i = 0; i < ids.size(); ++i) {
            EXPECT_EQ(hex(f.tokenizer->token_to_piece(ids[i])), pieces[i]) << "token " << ids[i];
        }
    }
}

TEST_P(TokenizerVsLlamaCpp, SpecialIdsAndEndOfGenerationSetEqualLlamaCpp) {
    const Fixture& f = fixture(GetParam());
    EXPECT_EQ(f.tokenizer->vocab_size(), f.truth["n_vocab"].get<size_t>());
    EXPECT_EQ(f.tokenizer->bos_id(), f.truth["bos"].get<int32_t>());
    EXPECT_EQ(f.tokenizer->eos_id(), f.truth["eos"].get<int32_t>());
    std::vector<int32_t> eog;
    for (size_t id = 0; id < f.tokenizer->vocab_size(); ++id) {
        if (f.tokenizer->is_eog(static_cast<int32_t>(id))) eog.push_back(static_cast<int32_t>(id));
    }
    EXPECT_EQ(eog, f.truth["eog"].get<std::vector<int32_t>>());
}

TEST_P(TokenizerVsLlamaCpp, DecodeOfEncodeGivesTheTextWhereLlamaCppRoundTrips) {
    const Fixture& f = fixture(GetParam());
    size_t num_round_trips = 0;
    for (const auto& c : f.truth["cases"]) {
        const std::string text = c["text"];
        std::string llama;
        for (const auto& p : c["pieces_hex"]) llama += unhex(p.get<std::string>());
        if (f.tokenizer->strips_leading_space() && !llama.empty() && llama[0] == ' ') llama.erase(0, 1);
        if (llama != text) continue;
        EXPECT_EQ(f.tokenizer->decode(f.tokenizer->encode(text, false, true)), text);
        ++num_round_trips;
    }
    EXPECT_GT(num_round_trips, 20u);
}

TEST_P(TokenizerVsLlamaCpp, StreamingDetokenizerNeverEmitsPartialUtf8) {
    const Fixture& f = fixture(GetParam());
    for (const auto& c : f.truth["cases"]) {
        const auto ids = c["ids_add_special"].get<std::vector<int32_t>>();
        DetokenizerStream stream(*f.tokenizer, true);
        std::string all;
        for (int32_t id : ids) {
            const std::string chunk = stream.push(id);
            EXPECT_TRUE(is_whole_utf8(chunk)) << "token " << id << " in [" << c["text"].get<std::string>() << "]";
            all += chunk;
        }
        all += stream.finish();
        const std::string whole = f.tokenizer->decode(ids);
        if (is_whole_utf8(whole)) {
            EXPECT_EQ(all, whole);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerVsLlamaCpp,
                         ::testing::Values("llama-spm", "gpt-2", "deepseek-coder", "llama-bpe", "qwen2", "deepseek-llm",
                                           "deepseek-v3", "starcoder", "dbrx", "falcon"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& ch : n)
                                 if (ch == '-') ch = '_';
                             return n;
                         });

}  // namespace

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(TokenizerVsLlamaCppTestFiles, LlamaCppOwnTestTokenizerCasesPass) {
    // llama.cpp's test-tokenizer-0 inputs (.inp, separated by a marker line) and expected ids (.out, one line
    // per input), tokenised without BOS/EOS and with special-token parsing, as that test does.
    const std::string kMarker = "\n__ggml_vocab_test__\n";
    for (const char* name : {"llama-spm", "gpt-2", "deepseek-coder"}) {
        const Fixture& f = fixture(name);
        const std::string inp = read_file(kDir + name + ".gguf.inp");
        std::istringstream out(read_file(kDir + name + ".gguf.out"));
        size_t pos = 0, num_cases = 0;
        std::string line;
        while (pos < inp.size() && std::getline(out, line)) {
            const size_t end = inp.find(kMarker, pos);
            ASSERT_NE(end, std::string::npos) << name;
            const std::string text = inp.substr(pos, end - pos);
            pos = end + kMarker.size();
            std::vector<int32_t> want;
            std::istringstream ids(line);
            for (int32_t id; ids >> id;) want.push_back(id);
            EXPECT_EQ(f.tokenizer->encode(text, false, true), want) << name << ": [" << text << "]";
            ++num_cases;
        }
        EXPECT_GT(num_cases, 40u) << name;
    }
}
