// Byte-level compatibility with ggml: decoding ggml's own quantised bytes must give ggml's values exactly, and
// quantising the same input must give ggml's bytes (fixtures from tools/make_quant_fixtures.py).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/quant.h"

using namespace moerig;
using namespace moerig::kernels;

namespace {

struct Fixture {
    std::vector<float> input;
    std::vector<uint8_t> quant;
    std::vector<float> decoded;
};

Fixture load(const std::string& name) {
    const std::string dir = std::string(MOERIG_TEST_DATA) + "/quant/";
    std::ifstream idx(dir + "index.json");
    EXPECT_TRUE(idx.good()) << "missing " << dir << "index.json";
    const auto index = nlohmann::json::parse(idx);
    const int64_t n = index.at("n");
    const size_t nbytes = index.at("types").at(name).at("quant_bytes");
    std::ifstream f(dir + name + ".bin", std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(raw.size(), 2 * n * sizeof(float) + nbytes) << name;
    Fixture fx;
    fx.input.resize(n);
    fx.quant.resize(nbytes);
    fx.decoded.resize(n);
    std::memcpy(fx.input.data(), raw.data(), n * sizeof(float));
    std::memcpy(fx.quant.data(), raw.data() + n * sizeof(float), nbytes);
    std::memcpy(fx.decoded.data(), raw.data() + n * sizeof(float) + nbytes, n * sizeof(float));
    return fx;
}

class GgmlFixture : public ::testing::TestWithParam<const char*> {};

}  // namespace

TEST_P(GgmlFixture, DequantizeMatchesGgmlExactly) {
    const Fixture fx = load(GetParam());
    const DType type = *dtype_from_name(GetParam());
    std::vector<float> y(fx.input.size());
    dequantize_row(type, fx.quant.data(), y.data(), static_cast<int64_t>(y.size()));
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], fx.decoded[i]) << GetParam() << " value " << i;
}

TEST_P(GgmlFixture, QuantizeReproducesGgmlBytes) {
    const Fixture fx = load(GetParam());
    const DType type = *dtype_from_name(GetParam());
    std::vector<uint8_t> q(fx.quant.size());
    quantize_row(type, fx.input.data(), q.data(), static_cast<int64_t>(fx.input.size()));
    size_t num_diff = 0;
    for (size_t i = 0; i < q.size(); ++i) num_diff += q[i] != fx.quant[i];
    EXPECT_EQ(num_diff, 0u) << GetParam() << ": " << num_diff << " of " << q.size() << " bytes differ";
}

INSTANTIATE_TEST_SUITE_P(Types, GgmlFixture,
                         ::testing::Values("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                                           "Q6_K", "MXFP4"));
