// libFuzzer entry: arbitrary bytes as a safetensors image; every tensor the reader accepts must lie inside
// the image, and every rejection must be a moerig::Error. Built and run by tools/fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "formats/safetensors.h"
#include "kernels/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace moerig;
    try {
        const formats::SafetensorsFile file(data, size, "fuzz.safetensors");
        for (const auto& t : file.tensors()) {
            if (t.num_bytes > 0) {
                volatile uint8_t first = t.data[0], last = t.data[t.num_bytes - 1];
                (void)first;
                (void)last;
            }
            try {
                (void)formats::require_supported(t, "fuzz.safetensors");
            } catch (const UnsupportedError&) {
            }
        }
    } catch (const moerig::Error&) {
    }
    return 0;
}
