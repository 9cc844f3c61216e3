// is_whole_utf8: the structural check of whole UTF-8 characters that the tokenizer tests, the fuzzer and
// `moerig tokenize` apply to pieces and streamed text. It must accept exactly what has every lead byte followed
// by all its continuation bytes, leniently as llama.cpp reads UTF-8.
#include <gtest/gtest.h>

#include <string>

#include "runtime/utf8_stream.h"

using moerig::runtime::is_whole_utf8;

namespace {

TEST(IsWholeUtf8, AcceptsWholeCharactersOfEveryLength) {
    EXPECT_TRUE(is_whole_utf8(""));
    EXPECT_TRUE(is_whole_utf8("plain ascii\n"));
    EXPECT_TRUE(is_whole_utf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"));  // a é € 😀 z
}

TEST(IsWholeUtf8, RejectsCutCharactersStrayContinuationsAndBadLeads) {
    const std::string text = "\xF0\x9F\x98\x80";
    for (size_t len = 1; len < text.size(); ++len) EXPECT_FALSE(is_whole_utf8(text.substr(0, len))) << len;
    EXPECT_FALSE(is_whole_utf8("\x80"));              // a continuation byte without a lead
    EXPECT_FALSE(is_whole_utf8("\xC3z"));             // a lead followed by ASCII
    EXPECT_FALSE(is_whole_utf8("\xF8\x80\x80\x80"));  // 0xF8..0xFF start no sequence
    EXPECT_FALSE(is_whole_utf8("\xFF"));
}

TEST(IsWholeUtf8, AcceptsOverlongFormsAndSurrogatesAsLlamaCppDoes) {
    EXPECT_TRUE(is_whole_utf8("\xC0\xAF"));      // overlong '/'
    EXPECT_TRUE(is_whole_utf8("\xED\xA0\x80"));  // a UTF-16 surrogate
}

}  // namespace
