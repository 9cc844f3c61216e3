// libFuzzer entry: arbitrary bytes as a GGUF image, then a tokenizer from its metadata and a short encode /
// decode through it. Every rejection must be a moerig::Error; anything else (crash, sanitizer report,
// other exception) is a bug. Built and run by tools/fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace moerig;
    try {
        const formats::GgufFile file(data, size, "fuzz.gguf");
        for (const auto& t : file.tensors()) {
            // Touch both ends of every tensor: the reader promised they are inside the image.
            if (t.num_bytes > 0) {
                volatile uint8_t first = t.data[0], last = t.data[t.num_bytes - 1];
                (void)first;
                (void)last;
            }
        }
        const auto tok = runtime::Tokenizer::from_metadata(file.metadata(), "fuzz.gguf");
        const auto ids =
            tok.encode("Hello world <s> </s> <|endoftext|> 123 \xC3\xBC \xF0\x9F\x98\x80 \n\t", true, true);
        runtime::DetokenizerStream stream(tok, true);
        for (int32_t id : ids) stream.push(id);
        stream.finish();
        (void)tok.decode(ids);
        for (size_t id = 0; id < tok.vocab_size() && id < 512; ++id) (void)tok.token_to_piece(static_cast<int32_t>(id));
    } catch (const moerig::Error&) {
    }
    return 0;
}
