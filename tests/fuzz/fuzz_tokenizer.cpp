// libFuzzer entry: arbitrary bytes as text for two real vocabularies (SPM and byte-level BPE with llama.cpp's
// pre-tokenizer regexes): encode must not crash, pieces must decode back, the streaming detokeniser must only
// emit valid UTF-8. Built and run by tools/fuzz.sh (MOERIG_TEST_DATA points at tests/data).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_pretokenize.h"
#include "runtime/utf8_stream.h"

namespace {

struct Vocab {
    std::unique_ptr<moerig::formats::GgufModel> model;
    std::unique_ptr<moerig::runtime::Tokenizer> tok;
};

Vocab load(const char* name) {
    Vocab v;
    v.model = std::make_unique<moerig::formats::GgufModel>(std::string(MOERIG_TEST_DATA) + "/tokenizer/" + name);
    v.tok = std::make_unique<moerig::runtime::Tokenizer>(moerig::runtime::Tokenizer::from_gguf(*v.model));
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Vocab spm = load("llama-spm.gguf");
    static const Vocab bpe = load("qwen2.gguf");
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (const Vocab* v : {&spm, &bpe}) {
        const auto ids = v->tok->encode(text, true, true);
        moerig::runtime::DetokenizerStream stream(*v->tok, true);
        for (int32_t id : ids) {
            if (id < 0 || static_cast<size_t>(id) >= v->tok->vocab_size()) std::abort();
            if (!moerig::runtime::is_whole_utf8(stream.push(id))) std::abort();
        }
        if (!moerig::runtime::is_whole_utf8(stream.finish())) std::abort();
        // Byte-level BPE and SPM with byte fallback lose nothing: pieces give back the text's bytes.
        // Checked where the lenient UTF-8 reading is lossless (no U+FFFD substitutions, no overlong forms).
        std::string canonical;
        for (uint32_t cp : moerig::runtime::utf8_to_codepoints(text)) moerig::runtime::append_utf8(canonical, cp);
        if (v == &bpe && canonical == text && v->tok->decode(v->tok->encode(text, false, false)) != text) std::abort();
    }
    return 0;
}
