// libFuzzer entry: arbitrary bytes as a Hugging Face tokenizer.json. Loading either succeeds or throws a
// moerig::Error (never a crash, a hang or another exception); a tokenizer that loads must encode a fixed mixed
// text to ids inside its vocabulary and decode them again. Built and run by tools/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kernels/error.h"
#include "runtime/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view json(reinterpret_cast<const char*>(data), size);
    try {
        const auto tok = moerig::runtime::Tokenizer::from_hf_json_text(json, {}, "fuzz/tokenizer.json");
        const std::string_view text =
            "Hello  world!\n\t123 caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac <s></s> \xf0\x9f\x98\x80";
        const auto ids = tok.encode(text, true, true);
        for (int32_t id : ids) {
            if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) std::abort();
        }
        (void)tok.decode(ids);
    } catch (const moerig::Error&) {
    }
    return 0;
}
